"""The per-frame core shared by the node and the bag replay: detections -> poses in image pixels.

`PosePipeline.process` runs, for one frame: detection (built-in HOG when configured and the
input has none), box validation, tracking, aligned LR windows for every person of the target
frame, one batched backend call (chunked above `max_batch`), and the mapping of HR-crop
keypoints back to image pixels through the inverse of the HR-crop affine (which each
`PersonResult` carries with its crop keypoints). It is deterministic: the same
frames give the same results. Per-stage timings (ms) come with every result.

With a 'center' model the result for frame n is produced when frame n + T//2 arrives and is
stamped with frame n's header; `process` returns None while that delay line fills, and `flush`
returns the remaining frames at the end of a stream.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from starpose_model.crops import invert_affines
from starpose_model.keypoints import NUM_KEYPOINTS, POSETRACK_UNANNOTATED

from . import drawing
from .backends.base import SR_HEIGHT, SR_WIDTH, InferenceBackend
from .detector import HogPersonDetector
from .tracker import MAX_TRACKS, TRACK_IOU_THRESHOLD, TRACK_MAX_AGE_S, IoUTracker
from .types import Detection, FrameInput, FrameResult, PersonResult
from .windows import StoredFrame, TrackWindows

DETECTORS = ('none', 'hog')


@dataclass
class PipelineConfig:
    """Tunables of the core (the node exposes them as parameters)."""

    detector: str = 'none'  # 'hog': find people when a frame comes without detections
    hog_upscale: float = 1.0
    hog_min_score: float = 0.0  # HOG's SVM margin; the node's min_detection_score applies to it too
    max_batch: int = 16  # windows per backend call; more persons are sent in several calls
    max_tracks: int = MAX_TRACKS  # live tracks (and persons per frame) at most
    track_iou_threshold: float = TRACK_IOU_THRESHOLD  # minimum IoU to continue a track
    track_max_age_s: float = TRACK_MAX_AGE_S  # a track unseen this long (stamp time) is evicted
    min_box_size: float = 2.0  # pixels, after clipping to the image
    draw_overlay: bool = False
    draw_mosaic: bool = False
    min_keypoint_score: float = 0.3  # keypoints below it are not drawn
    mosaic_columns: int = 4

    def __post_init__(self):
        """Reject values the pipeline cannot use, naming the field."""
        if self.detector not in DETECTORS:
            raise ValueError(f'detector must be one of {DETECTORS}, got {self.detector!r}')
        for name in ('max_batch', 'max_tracks', 'mosaic_columns'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
        if self.track_max_age_s < 0 or self.min_box_size <= 0:
            raise ValueError('track_max_age_s must be >= 0 and min_box_size > 0')


@dataclass
class PipelineCounters:
    """Monotonic counts for diagnostics."""

    frames: int = 0
    results: int = 0
    persons: int = 0
    rejected_detections: int = 0  # NaN / zero size / outside the image
    clipped_detections: int = 0  # partly outside: clipped to the image
    over_capacity_detections: int = 0  # beyond max_tracks in one frame: the lowest scores are left out
    stream_restarts: int = 0  # stamps went backwards or the image size changed: tracks and windows reset
    backend_calls: int = 0

    def as_dict(self) -> dict[str, int]:
        """Counters by name."""
        return dict(self.__dict__)


def sanitize_detections(detections: list[Detection], width: int, height: int,
                        min_size: float) -> tuple[list[Detection], int, int]:
    """Clip boxes to the image; drop non-finite, zero-size or outside ones.

    Returns (valid detections, number rejected, number clipped).
    """
    valid, rejected, clipped = [], 0, 0
    for detection in detections:
        try:
            x, y, w, h = (float(v) for v in detection.box_xywh)
            score = float(detection.score)
        except (TypeError, ValueError):
            rejected += 1
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h, score)) or w <= 0 or h <= 0:
            rejected += 1
            continue
        x0, y0 = max(x, 0.0), max(y, 0.0)
        x1, y1 = min(x + w, float(width)), min(y + h, float(height))
        if x1 - x0 < min_size or y1 - y0 < min_size:
            rejected += 1
            continue
        box = (x0, y0, x1 - x0, y1 - y0)
        if box != (x, y, w, h):
            clipped += 1
        valid.append(Detection(box, detection.track_id or None, score))
    return valid, rejected, clipped


class PosePipeline:
    """Tracks people and estimates their poses frame by frame with one backend (not thread-safe)."""

    def __init__(self, backend: InferenceBackend, config: PipelineConfig | None = None,
                 clock=time.perf_counter):
        """`clock` times the stages; benchmarks on a shared machine pass `time.thread_time` (CPU only)."""
        self.backend = backend
        self.clock = clock
        self.config = config or PipelineConfig()
        self.info = backend.model_info
        self.tracker = IoUTracker(track_iou_threshold=self.config.track_iou_threshold,
                                  track_max_age_s=self.config.track_max_age_s,
                                  max_tracks=self.config.max_tracks)
        self.windows = TrackWindows(self.info.window, self.info.target_index,
                                    (self.info.lr_height, self.info.lr_width))
        self.detector = (HogPersonDetector(upscale=self.config.hog_upscale, min_score=self.config.hog_min_score)
                         if self.config.detector == 'hog' else None)
        self.counters = PipelineCounters()
        # a person's score averages the joints its layout trains (PoseTrack never annotates the ears)
        unscored = POSETRACK_UNANNOTATED if self.info.keypoint_layout == 'posetrack' else ()
        self._scored_joints = [j for j in range(NUM_KEYPOINTS) if j not in unscored]
        self._last_stamp: int | None = None
        self._last_target_seq = -1

    def reset(self) -> None:
        """Forget all tracks and frames (a new stream)."""
        self.tracker.reset()
        self.windows.clear()
        self._last_stamp = None

    def process(self, frame: FrameInput) -> FrameResult | None:
        """Run one frame; return the result of its target frame (None while a 'center' delay fills)."""
        image = frame.image_rgb
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 \
                or image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f'image_rgb must be a non-empty (H, W, 3) uint8 array, got '
                             f'{getattr(image, "dtype", type(image).__name__)} {getattr(image, "shape", "")}')
        timings = _Timer(self.clock)
        resized = bool(self.windows.frames) and self.windows.frames[-1].image.shape != image.shape
        if resized or (self._last_stamp is not None and frame.stamp_ns < self._last_stamp):
            self.counters.stream_restarts += 1
            self.reset()
        self._last_stamp = frame.stamp_ns
        self.counters.frames += 1

        detections = frame.detections
        if detections is None:
            detections = self.detector.detect(image) if self.detector is not None else []
        timings.lap('detect')
        valid, rejected, clipped = sanitize_detections(detections, image.shape[1], image.shape[0],
                                                       self.config.min_box_size)
        self.counters.rejected_detections += rejected
        self.counters.clipped_detections += clipped
        tracked = self.tracker.update(frame.stamp_ns, valid)
        self.counters.over_capacity_detections = self.tracker.dropped_over_capacity
        self.windows.forget(self.tracker.evicted_ids)
        newest = self.windows.push(frame.stamp_ns, frame.frame_id, image, tracked)
        timings.lap('track')

        target_seq = newest.seq - self.windows.delay
        target = self.windows.frame(target_seq)
        if target is None:
            return None
        return self._estimate(target, timings)

    def flush(self) -> list[FrameResult]:
        """Results for the frames still inside the 'center' delay line (end of a stream)."""
        if not self.windows.frames:
            return []
        start = max(self._last_target_seq + 1, self.windows.frames[0].seq)
        return [self._estimate(self.windows.frame(seq), _Timer(self.clock))
                for seq in range(start, self.windows.frames[-1].seq + 1)]

    def _estimate(self, target: StoredFrame, timings: _Timer) -> FrameResult:
        """Crop, infer and decode every person of the target frame."""
        self._last_target_seq = target.seq
        persons_in = target.detections
        lr_windows, lr_affines = self.windows.crop(target, persons_in)
        timings.lap('crop')
        sr_images = np.empty((len(persons_in), SR_HEIGHT, SR_WIDTH, 3), dtype=np.uint8)
        keypoints = np.empty((len(persons_in), NUM_KEYPOINTS, 3), dtype=np.float32)
        for start in range(0, len(persons_in), self.config.max_batch):
            chunk = slice(start, start + self.config.max_batch)
            output = self.backend.infer(lr_windows[chunk])
            sr_images[chunk], keypoints[chunk] = output.sr_images, output.keypoints
            self.counters.backend_calls += 1
        timings.lap('infer')

        image_to_crop = hr_crop_affines(lr_affines, self.info.lr_height)
        crop_to_image = invert_affines(image_to_crop)
        image_keypoints = keypoints.copy()
        image_keypoints[..., :2] = keypoints[..., :2] @ crop_to_image[:, :, :2].transpose(0, 2, 1) \
            + crop_to_image[:, None, :, 2]
        scores = keypoints[:, self._scored_joints, 2].mean(axis=1).tolist()
        persons = [PersonResult(track_id=detection.track_id, box_xywh=np.asarray(detection.box_xywh, dtype=np.float64),
                                keypoints=image_keypoints[i], score=scores[i], sr_crop=sr_images[i],
                                crop_keypoints=keypoints[i], image_to_crop=image_to_crop[i])
                   for i, detection in enumerate(persons_in)]
        timings.lap('decode')

        overlay = mosaic = None
        if self.config.draw_overlay:
            overlay = drawing.draw_overlay(target.image, persons, self.info.keypoint_layout,
                                           self.config.min_keypoint_score)
        if self.config.draw_mosaic:
            mosaic = drawing.sr_mosaic(persons, self.info.keypoint_layout, self.config.mosaic_columns,
                                       self.config.min_keypoint_score)
        timings.lap('draw')
        self.counters.results += 1
        self.counters.persons += len(persons)
        return FrameResult(stamp_ns=target.stamp_ns, frame_id=target.frame_id, persons=persons,
                           timings_ms=timings.finish(), keypoint_layout=self.info.keypoint_layout,
                           image_rgb=target.image, overlay_rgb=overlay, mosaic_rgb=mosaic)


def hr_crop_affines(lr_affines: np.ndarray, lr_height: int) -> np.ndarray:
    """Affines (B, 2, 3) from image pixels to HR-crop (256x192) pixels, given image -> LR-crop affines.

    The HR and LR crops cover the same region and `crop_affine` scales linearly with the output
    size, so image -> HR is the LR affine times 256 / h (exact for the power-of-two SR factors).
    """
    return np.asarray(lr_affines, dtype=np.float64) * (SR_HEIGHT / lr_height)


class _Timer:
    """Laps of `clock` in milliseconds, keyed by stage name."""

    def __init__(self, clock):
        self.clock = clock
        self.laps: dict[str, float] = {}
        self._start = self._last = clock()

    def lap(self, name: str) -> None:
        now = self.clock()
        self.laps[name] = (now - self._last) * 1e3
        self._last = now

    def finish(self) -> dict[str, float]:
        self.laps['total'] = (self.clock() - self._start) * 1e3
        return dict(self.laps)
