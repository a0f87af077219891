"""Low-resolution degradation of HR person crops (paper section 4.1): Gaussian blur, then bicubic.

OpenCV's bicubic resize does not low-pass filter when shrinking, so the blur is what removes the
frequencies the LR grid cannot hold. The default blur is sigma = 0.4 x scale: 1.6 px for 4x, the
standard "BD" video super-resolution degradation (a Gaussian of sigma 1.6 before 4x downsampling),
and 0.8 px for 2x, the same kernel width relative to the LR pixel. The kernel is truncated at
3 sigma. The result is rounded to uint8 because the deployed model receives uint8 crops.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

HR_SIZE = (256, 192)  # (height, width) of the HR crop
SCALES = (2, 4)


def default_blur_sigma(scale: int) -> float:
    """Gaussian sigma (HR pixels) applied before downsampling by `scale`."""
    return 0.4 * scale


def lr_size(scale: int, hr_size: tuple[int, int] = HR_SIZE) -> tuple[int, int]:
    """(height, width) of the LR crop: 128 x 96 for 2x, 64 x 48 for 4x."""
    if scale not in SCALES:
        raise ValueError(f'scale must be one of {SCALES}, got {scale}')
    return hr_size[0] // scale, hr_size[1] // scale


def degrade(hr_image: np.ndarray, scale: int, blur_sigma: float | None = None) -> np.ndarray:
    """Blur then bicubic-downsample an HR uint8 RGB crop (H, W, 3) by `scale`; returns uint8."""
    if hr_image.ndim != 3 or hr_image.shape[2] != 3 or hr_image.dtype != np.uint8:
        raise ValueError(f'expected a uint8 (H, W, 3) image, got {hr_image.dtype} {hr_image.shape}')
    height, width = lr_size(scale, hr_image.shape[:2])
    sigma = default_blur_sigma(scale) if blur_sigma is None else float(blur_sigma)
    image = hr_image.astype(np.float32)
    if sigma > 0:
        ksize = 2 * math.ceil(3 * sigma) + 1
        image = cv2.GaussianBlur(image, (ksize, ksize), sigmaX=sigma, sigmaY=sigma,
                                 borderType=cv2.BORDER_REFLECT_101)
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)
