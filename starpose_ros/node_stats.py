"""The node's counters and latency window, shared by the callbacks, the worker and `/diagnostics`."""
from __future__ import annotations

import threading
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus


class NodeStats:
    """Counters and a latency window shared by the callbacks, the worker and the diagnostics timer.

    Counters are plain ints written by one thread each; the latency window has a lock because
    the diagnostics timer reads it while the worker appends.
    """

    LATENCY_WINDOW = 200

    def __init__(self):
        self.images_in = 0
        self.bad_images = 0
        self.detections_in = 0  # on the detections topic, before the person filter
        self.filtered_detections = 0  # not a person class, or below min_detection_score
        self.frames_out = 0
        self.pipeline_errors = 0
        self.persons_last_frame = 0
        self._latency_lock = threading.Lock()
        self._latencies_ms: deque[float] = deque(maxlen=self.LATENCY_WINDOW)

    def record_output(self, latency_ms: float, persons: int) -> None:
        """One published frame: its receipt -> publish latency and how many people it had."""
        with self._latency_lock:
            self._latencies_ms.append(latency_ms)
        self.frames_out += 1
        self.persons_last_frame = persons

    def latency_percentiles(self) -> tuple[float, float]:
        """p50 and p95 of the latency window (NaN before the first frame)."""
        with self._latency_lock:
            latencies = np.array(self._latencies_ms)
        if latencies.size == 0:
            return float('nan'), float('nan')
        return float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95))


def diagnostics_level(values: dict[str, object]) -> tuple[bytes, str]:
    """(level, message) of the node's status: WARN names the first problem the counters show."""
    if values['pipeline_errors']:
        return DiagnosticStatus.WARN, 'frames failed in the pipeline (see the log)'
    if values['detections_in'] and values['filtered_detections'] == values['detections_in']:
        return DiagnosticStatus.WARN, 'every detection is filtered out (person_class_ids, min_detection_score)'
    if values['images_in'] and not values['frames_out']:
        return DiagnosticStatus.WARN, 'images arrive but no frame was processed (detections paired?)'
    return DiagnosticStatus.OK, 'ok'
