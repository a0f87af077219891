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

from starpose_model.contract import HR_SIZE

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


def camera_lr_crop(frame: np.ndarray, image_to_hr: np.ndarray, factor: float, scale: int) -> np.ndarray:
    """The LR crop of a far camera: the whole frame shrunk by `factor` (INTER_AREA), then cropped.

    The region is the HR crop's (`image_to_hr`, image -> 256x192 pixels) resampled to the LR size
    with the pixel-centre convention of `cv2.resize` (LR pixel i covers HR pixels 4i .. 4i + 3 at
    4x), so LR and HR crops stay registered like `degrade`'s. A person h pixels tall in the frame
    is h / factor pixels tall in the camera the crop imitates.
    """
    height, width = lr_size(scale)
    small = frame
    if factor > 1.0:
        small = cv2.resize(frame, (max(1, round(frame.shape[1] / factor)), max(1, round(frame.shape[0] / factor))),
                           interpolation=cv2.INTER_AREA)
    fx, fy = frame.shape[1] / small.shape[1], frame.shape[0] / small.shape[0]
    # small-frame pixel q -> frame pixel p = f (q + 0.5) - 0.5 -> HR crop -> LR crop
    small_to_frame = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5], [0.0, 0.0, 1.0]])
    hr_to_lr = np.array([[1.0 / scale, 0.0, 0.5 / scale - 0.5], [0.0, 1.0 / scale, 0.5 / scale - 0.5]])
    affine = hr_to_lr @ np.vstack([image_to_hr, [0.0, 0.0, 1.0]]) @ small_to_frame
    return cv2.warpAffine(small, affine, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
