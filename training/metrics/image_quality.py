"""PSNR and SSIM of super-resolved crops against the HR crops (scikit-image).

Computed on uint8 RGB (data range 255), SSIM over the three channels (``channel_axis``) with
scikit-image's default 7 x 7 uniform window; a dataset figure is the mean over crops. Identical
images have infinite PSNR, which is kept (not clipped) so a caller sees it.
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _check(sr: np.ndarray, hr: np.ndarray) -> None:
    if sr.shape != hr.shape or sr.ndim != 3 or sr.shape[-1] != 3:
        raise ValueError(f'expected two (H, W, 3) RGB images of equal shape, got {sr.shape} and {hr.shape}')
    if sr.dtype != np.uint8 or hr.dtype != np.uint8:
        raise ValueError(f'expected uint8 images, got {sr.dtype} and {hr.dtype}')


def psnr(sr: np.ndarray, hr: np.ndarray) -> float:
    """PSNR in dB of a uint8 RGB image against its reference."""
    _check(sr, hr)
    with np.errstate(divide='ignore'):
        return float(peak_signal_noise_ratio(hr, sr, data_range=255))


def ssim(sr: np.ndarray, hr: np.ndarray) -> float:
    """SSIM of a uint8 RGB image against its reference (mean over channels)."""
    _check(sr, hr)
    return float(structural_similarity(hr, sr, data_range=255, channel_axis=-1))


class ImageQuality:
    """Running mean PSNR / SSIM over batches of crops."""

    def __init__(self) -> None:
        self.psnr: list[float] = []
        self.ssim: list[float] = []

    def update(self, sr_batch: np.ndarray, hr_batch: np.ndarray) -> None:
        """Add uint8 RGB batches of shape (B, H, W, 3)."""
        for sr, hr in zip(sr_batch, hr_batch, strict=True):
            self.psnr.append(psnr(sr, hr))
            self.ssim.append(ssim(sr, hr))

    def summary(self) -> dict[str, float]:
        """Mean PSNR (dB) and SSIM; NaN before any update."""
        if not self.psnr:
            return {'PSNR': float('nan'), 'SSIM': float('nan')}
        return {'PSNR': float(np.mean(self.psnr)), 'SSIM': float(np.mean(self.ssim))}
