"""Window-consistent augmentation: one random draw per window, applied to all T frames.

Geometry (rotation, scale, flip) changes the crop's affine, which is shared by every frame of the
window, so the frames stay aligned as the node sees them. The photometric distortion (brightness,
contrast, saturation, hue, each applied with probability 1/2, mmpose's PhotometricDistortion
ranges) uses the same parameters on every frame so no flicker is invented between frames.
Rotation follows HRNet: uniform within +-30 degrees, applied with probability 0.6.

For detector boxes (real footage) two draws go beyond the paper's: the crop centre moves by a
Gaussian share of the region size (`shift_std`; HOG and trackers rarely centre a person) and the
LR crops can come from the whole frame shrunk by a random factor (`camera_downscale`), the way a
far camera sees a person, instead of from the HR crop (`starpose_training.degradation`).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation (the paper's: rotation +-30, scale 0.75-1.25, flip)."""

    rotation_deg: float = 30.0
    rotation_prob: float = 0.6
    scale_range: tuple[float, float] = (0.75, 1.25)
    flip_prob: float = 0.5
    photometric_prob: float = 0.5  # per distortion
    brightness_delta: float = 32.0
    contrast_range: tuple[float, float] = (0.5, 1.5)
    saturation_range: tuple[float, float] = (0.5, 1.5)
    hue_delta: float = 18.0  # degrees on OpenCV's 0..180 hue scale
    shift_std: float = 0.0  # std of the crop-centre shift, as a share of the region's (w, h)
    camera_downscale: tuple[float, float] | None = None  # log-uniform frame shrink factor range


@dataclass(frozen=True)
class WindowAugmentation:
    """The drawn parameters of one window; the default is the identity."""

    rotation_deg: float = 0.0
    scale: float = 1.0  # multiplies the crop region size (> 1 zooms out)
    flip: bool = False
    brightness: float | None = None  # added to every channel
    contrast: float | None = None  # multiplies every channel
    saturation: float | None = None  # multiplies HSV saturation
    hue: float | None = None  # added to HSV hue
    shift: tuple[float, float] = (0.0, 0.0)  # crop-centre shift, share of the region's (w, h)
    camera_downscale: float | None = None  # LR crops from the frame shrunk by this factor

    @property
    def has_photometric(self) -> bool:
        """True when any photometric distortion was drawn."""
        return any(v is not None for v in (self.brightness, self.contrast, self.saturation, self.hue))

    def photometric(self, image: np.ndarray) -> np.ndarray:
        """Apply the drawn colour distortion to a uint8 RGB image (identity when none was drawn)."""
        if not self.has_photometric:
            return image
        out = image.astype(np.float32)
        if self.brightness is not None:
            out += self.brightness
        if self.contrast is not None:
            out *= self.contrast
        out = np.clip(out, 0, 255)
        if self.saturation is not None or self.hue is not None:
            hsv = cv2.cvtColor(np.rint(out).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
            if self.saturation is not None:
                hsv[..., 1] = np.clip(hsv[..., 1] * self.saturation, 0, 255)
            if self.hue is not None:
                hsv[..., 0] = np.mod(hsv[..., 0] + self.hue, 180)
            out = cv2.cvtColor(np.rint(hsv).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def sample_augmentation(rng: np.random.Generator, config: AugmentConfig) -> WindowAugmentation:
    """Draw one window's augmentation; the number of draws is fixed so streams stay reproducible."""
    u = rng.random(6)
    rotation = rng.uniform(-config.rotation_deg, config.rotation_deg)
    scale = rng.uniform(*config.scale_range)
    brightness = rng.uniform(-config.brightness_delta, config.brightness_delta)
    contrast = rng.uniform(*config.contrast_range)
    saturation = rng.uniform(*config.saturation_range)
    hue = rng.uniform(-config.hue_delta, config.hue_delta)
    shift = np.clip(rng.normal(0.0, 1.0, 2) * config.shift_std, -2.5 * config.shift_std, 2.5 * config.shift_std)
    low, high = config.camera_downscale or (1.0, 1.0)
    downscale = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    p = config.photometric_prob
    return WindowAugmentation(
        rotation_deg=float(rotation) if u[0] < config.rotation_prob else 0.0,
        scale=float(scale),
        flip=bool(u[1] < config.flip_prob),
        brightness=float(brightness) if u[2] < p else None,
        contrast=float(contrast) if u[3] < p else None,
        saturation=float(saturation) if u[4] < p else None,
        hue=float(hue) if u[5] < p else None,
        shift=(float(shift[0]), float(shift[1])),
        camera_downscale=downscale if config.camera_downscale else None,
    )
