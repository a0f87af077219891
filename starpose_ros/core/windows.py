"""Temporal windows of aligned low-resolution crops, one per tracked person.

The last T full frames live once in a shared ring (references, not copies), and each track only
remembers the first frame it appeared in. A track's window is the T consecutive frames around
its target frame, every one of them cropped with the *target* frame's enlarged box, so the
temporal model sees aligned crops (as in training and in DCPose/mmpose). Frames from before the
track was born do not exist for it: a short window is padded by repeating its oldest frame, and
a window that reaches past the newest frame (only when flushing the end of a stream with a
'center' target) repeats the newest. Memory is T frames plus one integer per live track.

Crops that shrink the person by more than 2x are resampled from a lazily built image pyramid
(cv2.pyrDown) instead of the full frame, so bilinear sampling does not alias.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from starpose_model.crops import box_to_center_scale, crop_affine, warp_crop

from .types import Detection


@dataclass
class StoredFrame:
    """One frame in the ring: its header, image, tracked detections and pyramid levels."""

    seq: int
    stamp_ns: int
    frame_id: str
    image: np.ndarray
    detections: list[Detection]
    _pyramid: list[np.ndarray] = field(default_factory=list, repr=False)

    def level(self, index: int) -> np.ndarray:
        """The image downscaled `index` times by 2 (0 is the full frame), built on first use."""
        if not self._pyramid:
            self._pyramid.append(self.image)
        while len(self._pyramid) <= index:
            self._pyramid.append(cv2.pyrDown(self._pyramid[-1]))
        return self._pyramid[index]


def _level_affine(affine: np.ndarray, level: int) -> np.ndarray:
    """Re-express an image->crop affine for pyramid level `level`.

    cv2.pyrDown centres level pixel q on image pixel 2q, so image p = 2**level * q.
    """
    return np.hstack([affine[:, :2] * 2.0 ** level, affine[:, 2:]])


class TrackWindows:
    """Shared frame ring + per-track birth frames -> batches of aligned LR windows."""

    def __init__(self, window: int, target_index: int, lr_hw: tuple[int, int]):
        if not 0 <= target_index < window:
            raise ValueError(f'target_index {target_index} outside a window of {window}')
        self.window = window
        self.target_index = target_index
        self.lr_hw = (int(lr_hw[0]), int(lr_hw[1]))
        self.frames: deque[StoredFrame] = deque(maxlen=window)
        self.first_seq: dict[str, int] = {}
        self._next_seq = 0

    @property
    def delay(self) -> int:
        """Frames between the newest frame and the target frame (0 for 'last')."""
        return self.window - 1 - self.target_index

    def clear(self) -> None:
        """Forget all frames and tracks (a new stream)."""
        self.frames.clear()
        self.first_seq.clear()

    def push(self, stamp_ns: int, frame_id: str, image: np.ndarray, detections: list[Detection]) -> StoredFrame:
        """Add the newest frame with its tracked detections; tracks seen first here are born here."""
        frame = StoredFrame(self._next_seq, stamp_ns, frame_id, image, detections)
        self._next_seq += 1
        self.frames.append(frame)
        for detection in detections:
            self.first_seq.setdefault(detection.track_id, frame.seq)
        return frame

    def forget(self, track_ids) -> None:
        """Drop the state of evicted tracks."""
        for track_id in track_ids:
            self.first_seq.pop(track_id, None)

    def frame(self, seq: int) -> StoredFrame | None:
        """The stored frame with sequence number `seq`, if still in the ring."""
        if not self.frames or not self.frames[0].seq <= seq <= self.frames[-1].seq:
            return None
        return self.frames[seq - self.frames[0].seq]

    def window_seqs(self, track_id: str, target_seq: int) -> list[int]:
        """Sequence numbers of the T frames of a track's window, oldest first, with edge padding."""
        oldest = max(self.first_seq.get(track_id, target_seq), self.frames[0].seq)
        oldest = min(oldest, target_seq)
        newest = self.frames[-1].seq
        start = target_seq - self.target_index
        return [min(max(seq, oldest), newest) for seq in range(start, start + self.window)]

    def crop(self, target: StoredFrame, detections: list[Detection]) -> tuple[np.ndarray, np.ndarray]:
        """LR windows uint8 (B, T, h, w, 3) and their image->LR-crop affines (B, 2, 3).

        All T crops of a window use the affine of the detection's box in the target frame.
        """
        out_h, out_w = self.lr_hw
        batch = np.empty((len(detections), self.window, out_h, out_w, 3), dtype=np.uint8)
        affines = np.empty((len(detections), 2, 3), dtype=np.float64)
        for index, detection in enumerate(detections):
            center, size = box_to_center_scale(detection.box_xywh)
            affine = crop_affine(center, size, self.lr_hw)
            affines[index] = affine
            shrink = max(size[1] / out_h, size[0] / out_w)  # image pixels per crop pixel
            level = max(0, int(math.floor(math.log2(shrink)))) if shrink >= 2.0 else 0
            level_affine = _level_affine(affine, level) if level else affine
            for slot, seq in enumerate(self.window_seqs(detection.track_id, target.seq)):
                source = self.frame(seq).level(level)
                batch[index, slot] = warp_crop(source, level_affine, self.lr_hw)
        return batch, affines
