"""A lightweight multi-person tracker: IoU with constant-velocity prediction + optimal assignment.

Detections that arrive without a track id get one here; detections that already carry an id
(from an upstream tracker) keep it and only refresh that track's bookkeeping. Predicting each
track's box forward by its smoothed velocity keeps ids stable when two people cross. Tracks not
seen for `track_max_age_s` of *stamp* time are evicted, and at most `max_tracks` exist at once, so
memory stays bounded whatever ids the input churns through.

Ids made here are 't1', 't2', ... (`GENERATED_ID_PREFIX`), never bare numbers: upstream trackers
number their tracks '1', '2', ..., and a shared namespace would merge an upstream person with an
unrelated track of ours that happens to carry the same number.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .types import Detection

GENERATED_ID_PREFIX = 't'


@dataclass
class Track:
    """State of one tracked person."""

    track_id: str
    box_xywh: np.ndarray  # last observed box
    velocity: np.ndarray  # (vx, vy) of the box's top-left corner, pixels per nanosecond
    first_stamp_ns: int
    last_stamp_ns: int
    external: bool  # id given by the input, not by this tracker
    hits: int = 1

    def predicted_box(self, stamp_ns: int) -> np.ndarray:
        """The box moved by the track's velocity to `stamp_ns` (size kept)."""
        box = self.box_xywh.copy()
        box[:2] += self.velocity * float(stamp_ns - self.last_stamp_ns)
        return box


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise intersection-over-union of (N, 4) and (M, 4) xywh boxes."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter_w = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    inter_h = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = inter_w * inter_h
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


# The defaults of the node, the replay and the labeller (PipelineConfig takes them from here).
TRACK_IOU_THRESHOLD = 0.3  # minimum IoU to continue a track
TRACK_MAX_AGE_S = 1.0  # a track unseen this long (stamp time) is evicted
MAX_TRACKS = 32  # live tracks (and persons per frame) at most


class IoUTracker:
    """Assigns stable string ids to person boxes frame after frame (call `update` once per frame)."""

    def __init__(self, track_iou_threshold: float = TRACK_IOU_THRESHOLD, track_max_age_s: float = TRACK_MAX_AGE_S,
                 max_tracks: int = MAX_TRACKS, velocity_smoothing: float = 0.5):
        if not 0.0 < track_iou_threshold <= 1.0:
            raise ValueError(f'track_iou_threshold must be in (0, 1], got {track_iou_threshold}')
        if track_max_age_s < 0 or max_tracks < 1:
            raise ValueError(f'need track_max_age_s >= 0 and max_tracks >= 1, got {track_max_age_s}, {max_tracks}')
        self.iou_threshold = track_iou_threshold
        self.max_age_ns = round(track_max_age_s * 1e9)  # stamps are integer nanoseconds
        self.max_tracks = int(max_tracks)
        self.velocity_smoothing = velocity_smoothing
        self.tracks: dict[str, Track] = {}
        self.evicted_ids: list[str] = []  # ids removed by the last update (their windows can go)
        self.dropped_over_capacity = 0  # detections refused because one frame had > max_tracks
        self._next_id = 1
        self._last_stamp_ns: int | None = None

    def reset(self) -> None:
        """Drop all tracks (e.g. the stream restarted); ids keep counting up, never reused."""
        self.evicted_ids = list(self.tracks)
        self.tracks.clear()
        self._last_stamp_ns = None

    def update(self, stamp_ns: int, detections: list[Detection]) -> list[Detection]:
        """Return the frame's detections, each with a track id, in input order.

        Detections beyond `max_tracks` in one frame (lowest scores first) are dropped and
        counted. Stamps going backwards reset the tracker before this frame is processed.
        """
        evicted: list[str] = []
        if self._last_stamp_ns is not None and stamp_ns < self._last_stamp_ns:
            self.reset()
            evicted = self.evicted_ids
        self._last_stamp_ns = stamp_ns
        if len(detections) > self.max_tracks:
            keep = sorted(np.argsort([-d.score for d in detections], kind='stable')[:self.max_tracks])
            self.dropped_over_capacity += len(detections) - self.max_tracks
            detections = [detections[i] for i in keep]

        assigned: list[str | None] = [d.track_id or None for d in detections]
        claimed = {tid for tid in assigned if tid is not None}
        free = [i for i, tid in enumerate(assigned) if tid is None]
        candidates = [t for t in self.tracks.values() if not t.external and t.track_id not in claimed]
        for det_index, track in self._match(stamp_ns, [detections[i] for i in free], candidates):
            assigned[free[det_index]] = track.track_id
        for i, tid in enumerate(assigned):
            if tid is None:
                assigned[i] = self._new_id(claimed)
                claimed.add(assigned[i])

        for detection, tid in zip(detections, assigned, strict=True):
            self._observe(stamp_ns, tid, np.asarray(detection.box_xywh, dtype=np.float64),
                          external=bool(detection.track_id))
        evicted += self._evict(stamp_ns, current=set(assigned))
        self.evicted_ids = evicted
        return [dataclasses.replace(d, track_id=tid) for d, tid in zip(detections, assigned, strict=True)]

    def _match(self, stamp_ns: int, detections: list[Detection], tracks: list[Track]):
        """Optimal one-to-one assignment maximising IoU with the tracks' predicted boxes."""
        if not detections or not tracks:
            return []
        predicted = np.stack([t.predicted_box(stamp_ns) for t in tracks])
        iou = iou_matrix(np.stack([np.asarray(d.box_xywh, dtype=np.float64) for d in detections]), predicted)
        rows, cols = linear_sum_assignment(-iou)
        return [(r, tracks[c]) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= self.iou_threshold]

    def _observe(self, stamp_ns: int, track_id: str, box: np.ndarray, external: bool) -> None:
        track = self.tracks.get(track_id)
        if track is None:
            self.tracks[track_id] = Track(track_id, box, np.zeros(2), stamp_ns, stamp_ns, external)
            return
        dt = stamp_ns - track.last_stamp_ns
        if dt > 0:
            measured = (box[:2] - track.box_xywh[:2]) / dt
            alpha = self.velocity_smoothing if track.hits > 1 else 1.0
            track.velocity = alpha * measured + (1.0 - alpha) * track.velocity
        track.box_xywh = box
        track.last_stamp_ns = stamp_ns
        track.hits += 1

    def _evict(self, stamp_ns: int, current: set[str]) -> list[str]:
        """Remove tracks unseen for longer than the maximum age, then the stalest beyond max_tracks."""
        evicted = [tid for tid, t in self.tracks.items() if stamp_ns - t.last_stamp_ns > self.max_age_ns]
        for tid in evicted:
            del self.tracks[tid]
        if len(self.tracks) > self.max_tracks:
            stalest = sorted((t for t in self.tracks.values() if t.track_id not in current),
                             key=lambda t: t.last_stamp_ns)[:len(self.tracks) - self.max_tracks]
            for track in stalest:
                del self.tracks[track.track_id]
                evicted.append(track.track_id)
        return evicted

    def _new_id(self, taken: set[str]) -> str:
        """The next 't<n>' id not used by a live track or by this frame's input."""
        while (track_id := f'{GENERATED_ID_PREFIX}{self._next_id}') in self.tracks or track_id in taken:
            self._next_id += 1
        self._next_id += 1
        return track_id
