"""Temporal windows of aligned low-resolution crops, one per tracked person.

The last T full frames live once in a shared ring (references, not copies), and each track only
remembers the first frame it appeared in. A track's window is the T consecutive frames around
its target frame, every one of them cropped with the *target* frame's enlarged box, so the
temporal model sees aligned crops (as in training and in DCPose/mmpose). Frames from before the
track was born do not exist for it: a short window is padded by repeating its oldest frame, and
a window that reaches past the newest frame (only when flushing the end of a stream with a
'center' target) repeats the newest. Memory is T frames plus one integer per live track.

Crops that shrink the person 3x or more are warped at f = min(8, ceil(shrink)) times the LR
size and area-averaged down (cv2.INTER_AREA), so bilinear sampling does not alias; the cost
stays proportional to the crop, never to the camera image.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from starpose_model.crops import box_to_center_scale, crop_affine, warp_crop

from .types import Detection


@dataclass
class StoredFrame:
    """One frame in the ring: its header, image and tracked detections."""

    seq: int
    stamp_ns: int
    frame_id: str
    image: np.ndarray
    detections: list[Detection]


SUPERSAMPLE_FROM = 3.0  # image pixels per LR pixel from which crops are supersampled
MAX_SUPERSAMPLING = 8


def supersampled_affine(affine: np.ndarray, factor: int) -> np.ndarray:
    """The affine to a crop `factor` times larger whose factor x factor blocks average to `affine`'s pixels.

    INTER_AREA by an integer factor averages block j = [f*j, f*j + f - 1], centred on f*j + (f-1)/2.
    """
    supersampled = affine * factor
    supersampled[:, 2] += (factor - 1) / 2.0
    return supersampled


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
        ring, first = list(self.frames), self.frames[0].seq
        for index, detection in enumerate(detections):
            center, size = box_to_center_scale(detection.box_xywh)
            affine = crop_affine(center, size, self.lr_hw)
            affines[index] = affine
            shrink = max(size[1] / out_h, size[0] / out_w)  # image pixels per crop pixel
            factor = min(MAX_SUPERSAMPLING, math.ceil(shrink)) if shrink >= SUPERSAMPLE_FROM else 1
            for slot, seq in enumerate(self.window_seqs(detection.track_id, target.seq)):
                image = ring[seq - first].image
                if factor == 1:
                    batch[index, slot] = warp_crop(image, affine, self.lr_hw)
                else:
                    large = warp_crop(image, supersampled_affine(affine, factor), (out_h * factor, out_w * factor))
                    batch[index, slot] = cv2.resize(large, (out_w, out_h), interpolation=cv2.INTER_AREA)
        return batch, affines
