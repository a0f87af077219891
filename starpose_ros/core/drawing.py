"""Images for people to look at: the skeleton overlay (for RViz) and a mosaic of SR crops."""
from __future__ import annotations

import functools
import zlib

import cv2
import numpy as np

from starpose_model.keypoints import SKELETON_EDGES

from .backends.base import SR_HEIGHT, SR_WIDTH
from .types import PersonResult


@functools.lru_cache(maxsize=1024)
def track_color(track_id: str) -> tuple[int, int, int]:
    """A bright RGB colour that is the same for a track id in every frame and every run."""
    hue = zlib.crc32(track_id.encode()) % 180
    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_skeleton(canvas: np.ndarray, keypoints: np.ndarray, layout: str, color, min_keypoint_score: float,
                  thickness: int) -> None:
    """Draw the edges and joints scoring at least `min_keypoint_score`, in place.

    Plain 8-connected lines (no anti-aliasing): three times cheaper, and drawing is paid per person
    per frame.
    """
    finite = np.isfinite(keypoints).all(axis=1)
    visible = (finite & (keypoints[:, 2] >= min_keypoint_score)).tolist()
    points = [tuple(p) for p in np.rint(np.where(finite[:, None], keypoints[:, :2], 0.0)).astype(np.int32).tolist()]
    for a, b in SKELETON_EDGES[layout]:
        if visible[a] and visible[b]:
            cv2.line(canvas, points[a], points[b], color, thickness)
    for point, shown in zip(points, visible, strict=True):
        if shown:
            cv2.circle(canvas, point, thickness + 1, color, -1)


def _label(canvas: np.ndarray, text: str, origin: tuple[int, int], color, scale: float = 0.5) -> None:
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def draw_overlay(image_rgb: np.ndarray, persons: list[PersonResult], layout: str,
                 min_keypoint_score: float) -> np.ndarray:
    """A copy of the image with each person's box, track id and skeleton."""
    canvas = image_rgb.copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 540))
    for person in persons:
        color = track_color(person.track_id)
        x, y, w, h = (int(round(v)) for v in person.box_xywh)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), color, thickness)
        _label(canvas, person.track_id, (x, max(12, y - 4)), color, 0.4 * thickness + 0.1)
        draw_skeleton(canvas, person.keypoints, layout, color, min_keypoint_score, thickness)
    return canvas


def sr_mosaic(persons: list[PersonResult], layout: str, columns: int, min_keypoint_score: float) -> np.ndarray:
    """A grid of the persons' SR crops (256x192 each), with ids and skeletons in crop pixels.

    With no persons it is one black tile, so a mosaic topic keeps publishing.
    """
    count = max(1, len(persons))
    columns = min(columns, count)
    rows = -(-count // columns)
    mosaic = np.zeros((rows * SR_HEIGHT, columns * SR_WIDTH, 3), dtype=np.uint8)
    for index, person in enumerate(persons):
        top, left = (index // columns) * SR_HEIGHT, (index % columns) * SR_WIDTH
        tile = mosaic[top:top + SR_HEIGHT, left:left + SR_WIDTH]
        tile[:] = person.sr_crop
        color = track_color(person.track_id)
        draw_skeleton(tile, person.crop_keypoints, layout, color, min_keypoint_score, 1)
        _label(tile, person.track_id, (4, 16), color)
    return mosaic
