"""Static scene of a clip: background, clutter, occluding objects, camera path and degradations."""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .config import SynthConfig
from .people import Ground, smooth_noise

SUBPIXEL_BITS = 4  # OpenCV drawing `shift`: coordinates carry 1/16 pixel
_ONE = 1 << SUBPIXEL_BITS
NOISE_PAD = 32  # the noise field is this much larger than the frame; each frame takes a random window


def fixed(points) -> np.ndarray:
    """Float pixel coordinates -> OpenCV fixed-point int32 (for the `shift` drawing argument)."""
    return np.round(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int32)


def _colour(rng: np.random.Generator, sat=(0.05, 0.6), val=(0.3, 0.9)) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*sat), rng.uniform(*val))
    return int(r * 255), int(g * 255), int(b * 255)


@dataclass
class Occluder:
    """An object standing on the ground at row `ground_y` (background pixels), drawn over people behind it."""

    shapes: list[tuple[str, np.ndarray, float, tuple]]  # (kind 'poly' | 'circle', points, radius, colour)
    ground_y: float


def _make_occluder(rng: np.random.Generator, config: SynthConfig, ground: Ground, margin: int) -> Occluder:
    """A pillar, box, bush or railing sized relative to the people at its depth."""
    ground_y = rng.uniform(*ground.foot_y_range) + margin
    h = ground.height_at(ground_y - margin)
    x = rng.uniform(0.0, config.width) + margin
    kind = rng.choice(('pillar', 'box', 'bush', 'railing'))
    colour = _colour(rng)
    darker = tuple(int(c * 0.7) for c in colour)
    shapes = []
    if kind == 'pillar':
        w = rng.uniform(0.15, 0.35) * h
        shapes.append(('poly', np.array([[x, 0], [x + w, 0], [x + w, ground_y], [x, ground_y]]), 0.0, colour))
        shapes.append(('poly', np.array([[x + 0.7 * w, 0], [x + w, 0], [x + w, ground_y], [x + 0.7 * w, ground_y]]),
                       0.0, darker))
    elif kind == 'box':
        w, bh = rng.uniform(0.3, 0.8) * h, rng.uniform(0.25, 0.55) * h
        shapes.append(('poly', np.array([[x, ground_y - bh], [x + w, ground_y - bh], [x + w, ground_y],
                                         [x, ground_y]]), 0.0, colour))
        top = 0.12 * bh
        shapes.append(('poly', np.array([[x + top, ground_y - bh - top], [x + w + top, ground_y - bh - top],
                                         [x + w, ground_y - bh], [x, ground_y - bh]]), 0.0, darker))
    elif kind == 'bush':
        green = _colour(rng, sat=(0.4, 0.8), val=(0.25, 0.6))
        green = (green[0] // 3, max(green[1], 90), green[2] // 3)
        for _ in range(int(rng.integers(4, 8))):
            r = rng.uniform(0.1, 0.22) * h
            cx, cy = x + rng.uniform(-0.3, 0.3) * h, ground_y - r * rng.uniform(0.6, 1.8)
            shade = tuple(int(np.clip(c * rng.uniform(0.75, 1.2), 0, 255)) for c in green)
            shapes.append(('circle', np.array([[cx, cy]]), r, shade))
    else:  # railing: two posts and two bars at hip and knee height
        w, post = rng.uniform(0.6, 1.5) * h, max(1.5, 0.04 * h)
        for px in (x, x + w):
            shapes.append(('poly', np.array([[px, ground_y - 0.55 * h], [px + post, ground_y - 0.55 * h],
                                             [px + post, ground_y], [px, ground_y]]), 0.0, darker))
        for frac in (0.5, 0.25):
            y = ground_y - frac * h
            shapes.append(('poly', np.array([[x, y], [x + w + post, y], [x + w + post, y + post],
                                             [x, y + post]]), 0.0, colour))
    return Occluder(shapes=shapes, ground_y=float(ground_y))


def _lines(image: np.ndarray, segments, colour, thickness: int = 1) -> None:
    for start, end in segments:
        cv2.line(image, fixed(start), fixed(end), colour, thickness, cv2.LINE_AA, SUBPIXEL_BITS)


def _wall_pattern(rng: np.random.Generator, image: np.ndarray, floor_y: int, colour) -> None:
    """Bricks, vertical planks or nothing on the wall (rows above `floor_y`)."""
    style = rng.choice(('plain', 'bricks', 'planks'))
    w = image.shape[1]
    if style == 'bricks':
        brick_h, brick_w = rng.uniform(6, 14), rng.uniform(18, 40)
        rows = np.arange(0.0, floor_y, brick_h)
        _lines(image, [((0, y), (w, y)) for y in rows], colour)
        _lines(image, [((x, y), (x, min(y + brick_h, floor_y)))
                       for k, y in enumerate(rows) for x in np.arange((k % 2) * brick_w / 2, w, brick_w)], colour)
    elif style == 'planks':
        _lines(image, [((x, 0), (x, floor_y)) for x in np.arange(0.0, w, rng.uniform(10, 30))], colour)


def _floor_pattern(rng: np.random.Generator, image: np.ndarray, floor_y: int, colour) -> None:
    """Perspective tiles, converging planks, coarse gravel-like speckle or nothing below `floor_y`."""
    style = rng.choice(('plain', 'tiles', 'planks', 'speckle'))
    h, w = image.shape[:2]
    floor = image[floor_y:].copy()
    vanish = (rng.uniform(0.2, 0.8) * w, -rng.uniform(0.3, 1.5) * h)  # in floor-crop coordinates
    if style in ('tiles', 'planks'):
        spacing = rng.uniform(0.12, 0.16) * w if style == 'tiles' else rng.uniform(0.03, 0.06) * w
        count = int(2 * w / spacing) + 2
        _lines(floor, [(vanish, (w / 2 + k * spacing, h)) for k in range(-count // 2, count // 2 + 1)], colour)
    if style == 'tiles':
        rows, y, step = [], 0.0, max(3.0, 0.03 * h)
        while y < h - floor_y:
            rows.append(((0, y), (w, y)))
            step *= 1.35
            y += step
        _lines(floor, rows, colour)
    elif style == 'speckle':
        dots = rng.normal(0.0, rng.uniform(10, 25), size=(floor.shape[0] // 2 + 1, w // 2 + 1, 1)).astype(np.float32)
        dots = cv2.resize(dots, (w, floor.shape[0]), interpolation=cv2.INTER_NEAREST)[..., None]
        floor = np.clip(floor + dots, 0, 255).astype(np.uint8)
    image[floor_y:] = floor


def _make_background(rng: np.random.Generator, config: SynthConfig, ground: Ground, margin: int) -> np.ndarray:
    """Wall/sky gradient over a floor, low-frequency blotches, floor tiles and clutter (RGB uint8)."""
    w, h = config.width + 2 * margin, config.height + 2 * margin
    floor_y = int(np.clip(ground.foot_y_range[0] - rng.uniform(0.0, 0.25) * config.height, 0, config.height)) + margin
    rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    wall_top, wall_bottom = np.array(_colour(rng)), np.array(_colour(rng))
    floor_far, floor_near = np.array(_colour(rng, val=(0.2, 0.7))), np.array(_colour(rng, val=(0.2, 0.8)))
    wall = wall_top + (wall_bottom - wall_top) * rows
    floor = floor_far + (floor_near - floor_far) * rows
    image = np.where(np.arange(h)[:, None, None] < floor_y, wall, floor) * np.ones((1, w, 1), np.float32)
    cells = max(4, int(rng.uniform(12, 40)))
    blotches = cv2.resize(rng.random((h // cells + 2, w // cells + 2)).astype(np.float32), (w, h),
                          interpolation=cv2.INTER_CUBIC)
    image *= (1.0 + rng.uniform(0.1, 0.35) * (blotches - 0.5))[..., None]
    image = np.clip(image, 0, 255).astype(np.uint8)
    _wall_pattern(rng, image, floor_y, tuple(int(c) for c in wall_bottom * rng.uniform(0.55, 0.9)))
    _floor_pattern(rng, image, floor_y, tuple(int(c) for c in floor_near * rng.uniform(0.5, 0.85)))
    n_clutter = int(rng.integers(config.clutter[0], config.clutter[1] + 1))
    for _ in range(n_clutter):
        colour = _colour(rng, sat=(0.0, 0.9), val=(0.1, 1.0))
        cx, cy = rng.uniform(0, w), rng.uniform(0, floor_y + 0.1 * h)
        size = rng.uniform(0.02, 0.18) * h
        shape = rng.integers(4)
        if shape == 0:  # window / poster / door
            cv2.rectangle(image, fixed((cx, cy)), fixed((cx + size * rng.uniform(0.5, 2), cy + size)), colour, -1,
                          cv2.LINE_AA, SUBPIXEL_BITS)
        elif shape == 1:  # lamp / sign
            cv2.circle(image, fixed((cx, cy)), int(size * _ONE / 2), colour, -1, cv2.LINE_AA, SUBPIXEL_BITS)
        elif shape == 2:  # cable / edge
            end = (cx + rng.uniform(-1, 1) * 3 * size, cy + rng.uniform(-1, 1) * 3 * size)
            cv2.line(image, fixed((cx, cy)), fixed(end), colour, int(rng.integers(1, 4)), cv2.LINE_AA, SUBPIXEL_BITS)
        else:  # shelf / bench with a frame
            box = np.array([[cx, cy], [cx + 2 * size, cy], [cx + 2 * size, cy + 0.4 * size], [cx, cy + 0.4 * size]])
            cv2.fillConvexPoly(image, fixed(box), colour, cv2.LINE_AA, SUBPIXEL_BITS)
            cv2.polylines(image, [fixed(box)], True, tuple(c // 2 for c in colour), 1, cv2.LINE_AA, SUBPIXEL_BITS)
    grain = rng.normal(0.0, rng.uniform(1.0, 6.0), size=(h, w, 1)).astype(np.float32)
    return np.clip(image + grain, 0, 255).astype(np.uint8)


@dataclass
class Scene:
    """Everything static or slowly varying in one clip besides the people."""

    background: np.ndarray  # (H + 2m, W + 2m, 3) RGB, larger than the frame for camera motion
    margin: int
    occluders: list[Occluder]
    camera_offset: np.ndarray  # (F, 2) camera translation in pixels per frame
    gain: np.ndarray  # (F,) global brightness factor per frame
    light_ramp: np.ndarray  # (H, W, 3) float32 spatial brightness factor (a light from one side)
    noise_field: np.ndarray  # (H + pad, W + pad, 3) float32 unit Gaussian noise, windowed per frame
    noise_sigma: float
    blur_sigma: float

    @classmethod
    def sample(cls, rng: np.random.Generator, config: SynthConfig, ground: Ground) -> Scene:
        """Draw a random scene for `config` (deterministic in `rng`)."""
        margin = int(math.ceil(config.camera_shake)) + 2
        background = _make_background(rng, config, ground, margin)
        n_occluders = int(rng.integers(config.occluders[0], config.occluders[1] + 1))
        occluders = [_make_occluder(rng, config, ground, margin) for _ in range(n_occluders)]
        t = np.arange(config.frames) / config.fps
        camera = config.camera_shake * np.stack([smooth_noise(rng, t, (0.1, 0.8)),
                                                 smooth_noise(rng, t, (0.1, 0.8))], axis=1)
        camera = np.clip(camera, -config.camera_shake, config.camera_shake)
        gain = 1.0 + np.clip(config.lighting_change * smooth_noise(rng, t, (0.05, 0.3)),
                             -config.lighting_change, config.lighting_change)
        angle, strength = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 1.4 * config.lighting_change)
        yy, xx = np.mgrid[0:config.height, 0:config.width].astype(np.float32)
        ramp = (xx * np.cos(angle) + yy * np.sin(angle)) / max(config.width, config.height)
        light_ramp = np.repeat((1.0 + strength * (ramp - ramp.mean()))[..., None], 3, axis=2).astype(np.float32)
        noise = rng.standard_normal((config.height + NOISE_PAD, config.width + NOISE_PAD, 3), dtype=np.float32)
        return cls(background=background, margin=margin, occluders=occluders, camera_offset=camera, gain=gain,
                   light_ramp=light_ramp, noise_field=noise, noise_sigma=float(rng.uniform(*config.noise_sigma)),
                   blur_sigma=float(rng.uniform(*config.blur_sigma)))

    def background_at(self, frame: int, size: tuple[int, int]) -> np.ndarray:
        """The background seen by the (shaken) camera in `frame`, sub-pixel shifted."""
        dx, dy = self.camera_offset[frame]
        shift = np.array([[1.0, 0.0, self.margin + dx], [0.0, 1.0, self.margin + dy]])
        return cv2.warpAffine(self.background, shift, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT)

    def degrade(self, image: np.ndarray, frame: int, rng: np.random.Generator) -> np.ndarray:
        """Optical blur, lighting change and sensor noise (a per-frame random window of the clip's noise field)."""
        if self.blur_sigma > 0.3:
            image = cv2.GaussianBlur(image, (0, 0), self.blur_sigma)
        lit = cv2.multiply(image, self.light_ramp, dtype=cv2.CV_32F, scale=float(self.gain[frame]))
        if self.noise_sigma > 0:
            height, width = image.shape[:2]
            dy, dx = rng.integers(0, NOISE_PAD + 1, size=2)
            sign = self.noise_sigma if rng.uniform() < 0.5 else -self.noise_sigma
            lit = cv2.scaleAdd(self.noise_field[dy:dy + height, dx:dx + width], sign, lit)
        return np.clip(lit, 0, 255).astype(np.uint8)
