"""Configuration of the synthetic video generator: one dataclass and three presets.

Ranges are ``(low, high)`` tuples sampled uniformly per video or per person, so one preset gives
varied clips. Every field can be overridden by name (``generate_dataset(..., frames=30)`` or
``starpose-synth --set frames=30``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

Range = tuple[float, float]


@dataclass(frozen=True)
class SynthConfig:
    """Everything that shapes a generated dataset (sizes, people, motion, difficulty)."""

    width: int = 640
    height: int = 480
    fps: float = 25.0
    frames: int = 60  # frames per video
    videos: dict[str, int] = field(default_factory=lambda: {'val': 1})  # split -> number of videos
    people: tuple[int, int] = (2, 4)  # annotated people (tracks) per video
    person_height: Range = (30.0, 80.0)  # standing height in pixels, near top / bottom of the frame
    entering_fraction: float = 0.35  # share of people who start outside the frame and walk in
    motion_weights: dict[str, float] = field(default_factory=lambda: {'walk': 0.6, 'stand': 0.25, 'exercise': 0.15})
    walk_speed: Range = (0.5, 1.1)  # body heights per second
    turn_rate: float = 0.6  # typical change of walking direction, radians per second
    occluders: tuple[int, int] = (1, 3)  # static objects (pillars, boxes, plants) in front of people
    clutter: tuple[int, int] = (8, 20)  # background shapes (never in front of people)
    distractors: tuple[int, int] = (0, 0)  # tiny unannotated people, marked as ignore regions
    distractor_height: Range = (12.0, 22.0)
    noise_sigma: Range = (1.0, 5.0)  # sensor noise, 8-bit grey levels
    blur_sigma: Range = (0.0, 0.8)  # Gaussian blur of the whole frame, pixels
    lighting_change: float = 0.25  # peak relative change of brightness over a clip
    camera_shake: float = 3.0  # peak camera translation, pixels
    jpeg_quality: int = 92
    labeled_every: int = 1  # 1: every frame labeled; k: every k-th frame (PoseTrack train style)
    min_visible_pixels: int = 30  # people with fewer unoccluded pixels in a frame are not annotated

    def __post_init__(self):
        """Reject settings that cannot produce a valid dataset, naming the field."""
        problems = []
        if self.width < 32 or self.height < 32:
            problems.append(f'width x height must be at least 32 x 32, got {self.width} x {self.height}')
        if self.frames < 1:
            problems.append(f'frames must be >= 1, got {self.frames}')
        if not self.videos or any(n < 1 for n in self.videos.values()):
            problems.append(f'videos must map split names to counts >= 1, got {self.videos}')
        for name in ('people', 'person_height', 'walk_speed', 'occluders', 'clutter', 'distractors',
                     'distractor_height', 'noise_sigma', 'blur_sigma'):
            low, high = getattr(self, name)
            if low < 0 or high < low:
                problems.append(f'{name} must be a (low, high) range with 0 <= low <= high, got {(low, high)}')
        if self.person_height[0] < 8:
            problems.append(f'person_height must start at 8 pixels or more, got {self.person_height}')
        if not any(w > 0 for w in self.motion_weights.values()) or set(self.motion_weights) - set(MOTIONS):
            problems.append(f'motion_weights must weight some of {MOTIONS}, got {self.motion_weights}')
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f'jpeg_quality must be in 1..100, got {self.jpeg_quality}')
        if self.labeled_every < 1:
            problems.append(f'labeled_every must be >= 1, got {self.labeled_every}')
        if self.people[1] + self.distractors[1] > 99:
            problems.append('people + distractors must stay <= 99 per clip (annotation ids use two digits)')
        if self.fps <= 0:
            problems.append(f'fps must be > 0, got {self.fps}')
        if problems:
            raise ValueError('invalid synthetic config: ' + '; '.join(problems))


MOTIONS = ('walk', 'stand', 'exercise')

PRESETS: dict[str, SynthConfig] = {
    # Tests: two short, small clips that render in well under a second.
    'small': SynthConfig(width=320, height=240, frames=8, videos={'train': 1, 'val': 1}, people=(2, 3),
                         person_height=(50.0, 110.0), occluders=(1, 2), clutter=(4, 8), camera_shake=2.0),
    # The live-camera case: people 30-80 px tall in a VGA frame.
    'demo': SynthConfig(),
    # Training: people large enough that 256x192 HR crops carry real detail (the LR input is made
    # small by the degradation, not by the renderer).
    'train': SynthConfig(frames=60, videos={'train': 12, 'val': 3}, people=(2, 4), person_height=(70.0, 250.0),
                         distractors=(0, 3), labeled_every=1),
}


# Difficulty levels: image-quality and clutter settings applied over a preset (before overrides).
# `medium` keeps the preset's own values.
DIFFICULTY: dict[str, dict] = {
    'easy': {'noise_sigma': (0.0, 1.5), 'blur_sigma': (0.0, 0.3), 'occluders': (0, 1), 'lighting_change': 0.1,
             'camera_shake': 1.0},
    'medium': {},
    'hard': {'noise_sigma': (4.0, 10.0), 'blur_sigma': (0.5, 1.5), 'occluders': (2, 5), 'lighting_change': 0.4,
             'camera_shake': 6.0, 'clutter': (15, 35)},
}


def make_config(preset: str = 'small', difficulty: str = 'medium', **overrides) -> SynthConfig:
    """A preset, then a difficulty level, then `overrides` by field name (unknown names raise)."""
    if preset not in PRESETS:
        raise ValueError(f'unknown preset {preset!r}; choose one of {sorted(PRESETS)}')
    if difficulty not in DIFFICULTY:
        raise ValueError(f'unknown difficulty {difficulty!r}; choose one of {list(DIFFICULTY)}')
    known = {f.name for f in fields(SynthConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f'unknown synthetic config field(s) {unknown}; valid: {sorted(known)}')
    return replace(PRESETS[preset], **{**DIFFICULTY[difficulty], **overrides})
