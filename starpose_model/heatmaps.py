"""Keypoint heatmaps: Gaussian targets, decoding (argmax + quarter pixel, DARK), flip test, back-mapping.

Coordinates: heatmap pixel (u, v) is HR-crop pixel (4u, 4v) (stride 4, 256x192 crop -> 64x48 map,
HRNet's convention), and HR-crop pixels go to camera-image pixels through the inverse of the
crop's affine (`starpose_model.crops`). The torch decoding is written with export-friendly ops
(ArgMax, Gather, Sign) because it runs inside the ONNX graph; DARK refinement is numpy post-processing.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from starpose_model import crops
from starpose_model.keypoints import flip_permutation

HEATMAP_SIZE = (64, 48)  # (height, width)
HEATMAP_STRIDE = 4  # HR-crop pixels per heatmap pixel
SIGMA = 2.0


def generate_targets(keypoints, heatmap_size: tuple[int, int] = HEATMAP_SIZE, sigma: float = SIGMA,
                     stride: int = HEATMAP_STRIDE, subpixel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian heatmap targets and target weights for keypoints `[K, 3]` (x, y in HR-crop pixels, visibility).

    Default = the official HRNet target: the centre rounded to the nearest heatmap pixel, an
    unnormalised Gaussian (peak 1) truncated to +-3 sigma, weight 0 for unlabelled joints
    (visibility 0) and for joints whose +-3 sigma window lies wholly outside the map. With
    `subpixel=True` the Gaussian is centred on the exact position and not truncated (the
    unbiased encoding DARK decoding pairs with). Returns `([K, H, W] float32, [K] float32)`.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 2 or keypoints.shape[1] < 3:
        raise ValueError(f'keypoints must have shape [K, 3] (x, y, visibility), got {keypoints.shape}')
    height, width = heatmap_size
    centres = keypoints[:, :2] / stride
    if not subpixel:
        centres = np.floor(centres + 0.5)
    radius = 3 * sigma
    visible = (keypoints[:, 2] > 0) & np.isfinite(centres).all(axis=1)
    in_map = ((centres[:, 0] + radius >= -0.5) & (centres[:, 0] - radius < width - 0.5)
              & (centres[:, 1] + radius >= -0.5) & (centres[:, 1] - radius < height - 0.5))
    weights = (visible & in_map).astype(np.float32)

    centres = np.where(weights[:, None] > 0, centres, 0.0)
    dx = np.arange(width)[None, None, :] - centres[:, 0, None, None]
    dy = np.arange(height)[None, :, None] - centres[:, 1, None, None]
    heatmaps = np.exp(-(dx ** 2 + dy ** 2) / (2 * sigma ** 2))
    if not subpixel:
        heatmaps = heatmaps * ((np.abs(dx) <= radius) & (np.abs(dy) <= radius))
    heatmaps *= weights[:, None, None]
    return heatmaps.astype(np.float32), weights


def decode_argmax(heatmaps: torch.Tensor, quarter_offset: bool = True) -> torch.Tensor:
    """Maximum of each heatmap `[..., H, W]` -> `[..., 3]` (x, y in heatmap pixels, score = max value).

    With `quarter_offset` each axis moves 0.25 px toward its higher neighbour (HRNet's
    post-processing) where both neighbours exist; on the map's border that axis stays put. (The
    official code skips the whole joint within two pixels of the border; per axis keeps more.)
    """
    height, width = heatmaps.shape[-2:]
    flat = heatmaps.flatten(-2)
    score, index = flat.max(dim=-1, keepdim=True)
    x = index % width
    y = torch.div(index, width, rounding_mode='floor')
    coords = torch.cat([x, y], dim=-1).to(heatmaps.dtype)
    if quarter_offset:
        def value_at(dx: int, dy: int) -> torch.Tensor:
            nx = (x + dx).clamp(0, width - 1)
            ny = (y + dy).clamp(0, height - 1)
            return flat.gather(-1, ny * width + nx)

        inside_x = ((x > 0) & (x < width - 1)).to(heatmaps.dtype)
        inside_y = ((y > 0) & (y < height - 1)).to(heatmaps.dtype)
        step_x = torch.sign(value_at(1, 0) - value_at(-1, 0)) * inside_x
        step_y = torch.sign(value_at(0, 1) - value_at(0, -1)) * inside_y
        coords = coords + 0.25 * torch.cat([step_x, step_y], dim=-1)
    return torch.cat([coords, score], dim=-1)


def heatmap_to_crop(keypoints: np.ndarray, stride: int = HEATMAP_STRIDE) -> np.ndarray:
    """Heatmap-pixel keypoints `[..., >=2]` -> HR-crop pixels (x, y scaled by the stride; other columns kept)."""
    out = np.array(keypoints, dtype=np.float64)
    out[..., :2] *= stride
    return out


def crop_to_image(keypoints: np.ndarray, image_to_crop: np.ndarray) -> np.ndarray:
    """HR-crop-pixel keypoints `[..., >=2]` -> camera-image pixels through the inverse of the crop affine."""
    out = np.array(keypoints, dtype=np.float64)
    out[..., :2] = crops.transform_points(out[..., :2], crops.invert_affine(image_to_crop))
    return out


def flip_back(heatmaps: torch.Tensor, layout: str, shift: bool = True) -> torch.Tensor:
    """Undo a horizontal input flip on heatmaps `[B, K, H, W]`: mirror, swap left/right channels.

    `shift` moves the result one pixel right, as the official HRNet test does to compensate the
    flip's half-pixel misalignment at stride 4.
    """
    flipped = heatmaps.flip(-1)[:, flip_permutation(layout)]
    if shift:
        flipped = torch.cat([flipped[..., :1], flipped[..., :-1]], dim=-1)
    return flipped


def flip_test(pose_net: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, layout: str,
              shift: bool = True) -> torch.Tensor:
    """Average the heatmaps of `images` and of their horizontal mirror (flipped back) in one batched call."""
    heatmaps = pose_net(torch.cat([images, images.flip(-1)], dim=0))
    plain, mirrored = heatmaps.chunk(2, dim=0)
    return 0.5 * (plain + flip_back(mirrored, layout, shift=shift))
