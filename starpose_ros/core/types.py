"""Plain data passed between the core's stages, the node and the bag replay (no ROS types).

Boxes are (x, y, w, h) in image pixels with (x, y) the top-left corner; keypoints are (17, 3)
arrays of x, y (image pixels, HR-crop pixels for crop keypoints) and score. Stamps are integer
nanoseconds, copied from the input image's header and never taken from a clock.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from starpose_model.crops import invert_affines


@dataclass(frozen=True)
class Detection:
    """One person box from a detector; `track_id` None means the built-in tracker assigns one."""

    box_xywh: tuple[float, float, float, float]
    track_id: str | None = None
    score: float = 1.0


@dataclass
class FrameInput:
    """One camera image (RGB uint8, H x W x 3) with its header and optional detections.

    `detections` None means "no detection source": the pipeline runs its own detector if one is
    configured. An empty list means "the detector saw nobody". The pipeline keeps a reference to
    `image_rgb` for the next T frames, so the caller must not write into it afterwards.
    """

    stamp_ns: int
    frame_id: str
    image_rgb: np.ndarray
    detections: list[Detection] | None = None


@dataclass
class PersonResult:
    """The pose of one tracked person in one frame, with the HR crop it was estimated in.

    The pipeline derives the crop geometry once; drawing, filmstrips and image-quality metrics
    read it from here instead of recomputing it from the box.
    """

    track_id: str
    box_xywh: np.ndarray  # (4,) float64, image pixels
    keypoints: np.ndarray  # (17, 3) float32: x, y in image pixels, score
    score: float  # mean score of the joints the keypoint layout trains
    sr_crop: np.ndarray  # (256, 192, 3) uint8 RGB super-resolved crop of the target frame
    crop_keypoints: np.ndarray  # (17, 3) float32: x, y in HR-crop pixels as the backend returned them, score
    image_to_crop: np.ndarray  # (2, 3) float64: image pixels -> HR-crop pixels

    @property
    def crop_to_image(self) -> np.ndarray:
        """(2, 3) HR-crop pixels -> image pixels: the inverse `keypoints` were mapped with."""
        return invert_affines(self.image_to_crop)


@dataclass
class FrameResult:
    """Everything the core produced for one (target) frame; stamped with that frame's header.

    `image_rgb` is the target frame's image (the overlay's background); `overlay_rgb` and
    `mosaic_rgb` are filled only when the pipeline is configured to draw them.
    """

    stamp_ns: int
    frame_id: str
    persons: list[PersonResult]
    timings_ms: dict[str, float]
    keypoint_layout: str
    image_rgb: np.ndarray | None = None
    overlay_rgb: np.ndarray | None = None
    mosaic_rgb: np.ndarray | None = None
