"""Person-crop geometry shared by training, the node and the bag replay.

A crop is the affine map from a person box (centre/scale, aspect forced to W/H = 0.75, padded
1.25x as in HRNet) to a fixed output size. Every frame of a temporal window is cropped with the
target frame's map, so the network sees aligned crops.
"""
from __future__ import annotations

import cv2
import numpy as np

ASPECT_RATIO = 192 / 256  # width / height of the HRNet input
BOX_PADDING = 1.25


def box_to_center_scale(box_xywh, aspect_ratio: float = ASPECT_RATIO,
                        padding: float = BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Return the centre and (width, height) of the padded, aspect-corrected region of a box."""
    x, y, w, h = (float(v) for v in box_xywh)
    if not np.isfinite([x, y, w, h]).all() or w <= 0 or h <= 0:
        raise ValueError(f'invalid person box (x, y, w, h) = {tuple(box_xywh)}')
    center = np.array([x + 0.5 * w, y + 0.5 * h], dtype=np.float64)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w * padding, h * padding], dtype=np.float64)


def crop_affine(center, size, output_hw: tuple[int, int], rotation_deg: float = 0.0,
                flip: bool = False) -> np.ndarray:
    """2x3 matrix mapping image pixels to crop pixels for a region of `size` (w, h) at `center`.

    Follows HRNet's convention (crop = L (p - center) + output_size / 2, OpenCV pixel-centre
    coordinates), so heatmap coordinates times the stride are crop coordinates. With `flip` the
    crop is mirrored horizontally; with `rotation_deg` the region is rotated counter-clockwise
    about its centre before resampling.
    """
    out_h, out_w = output_hw
    sx, sy = out_w / float(size[0]), out_h / float(size[1])
    theta = np.deg2rad(rotation_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    # image -> centred region coordinates -> rotated -> scaled -> crop coordinates
    linear = np.array([[cos, sin], [-sin, cos]]) * np.array([[sx], [sy]])
    if flip:
        linear[0] *= -1.0
    offset = np.array([out_w / 2.0, out_h / 2.0]) - linear @ np.asarray(center, dtype=np.float64)
    return np.hstack([linear, offset[:, None]])


def invert_affines(affines) -> np.ndarray:
    """Inverses of 2x3 affines, one or a stack (..., 2, 3).

    One formula for every caller: the core maps keypoints to the image with it and publishes the
    same matrices, so what is published agrees with the keypoints to the bit.
    """
    affines = np.asarray(affines, dtype=np.float64)
    linear_inverse = np.linalg.inv(affines[..., :2])
    offset = -linear_inverse @ affines[..., 2:]
    return np.concatenate([linear_inverse, offset], axis=-1)


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of one 2x3 affine matrix."""
    return invert_affines(affine)


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to points of shape (..., 2)."""
    points = np.asarray(points, dtype=np.float64)
    return points @ affine[:, :2].T + affine[:, 2]


def warp_crop(image: np.ndarray, affine: np.ndarray, output_hw: tuple[int, int]) -> np.ndarray:
    """Resample the crop with bilinear interpolation; outside the image is black."""
    return cv2.warpAffine(image, affine, (int(output_hw[1]), int(output_hw[0])), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
