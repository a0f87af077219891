"""People of a clip: appearance, trajectories and per-frame joint angles (walk, stand, exercise).

Every person is simulated for the whole clip up front from its own random stream, so a person's
motion does not depend on how many others share the scene. Positions are foot points in image
pixels; the apparent height follows a ground-plane perspective (lower in the frame = nearer =
taller), so people walking towards the camera grow.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from .body import PART_ID, PoseAngles, Projected, Proportions, body_points, project
from .config import MOTIONS, SynthConfig

SKIN_TONES = ((255, 224, 196), (241, 194, 155), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 56, 30))
HAIR_COLOURS = ((20, 15, 10), (60, 40, 25), (110, 75, 40), (200, 170, 110), (150, 150, 150), (90, 30, 20))
PATTERNS = ('plain', 'stripes', 'checks')


def _random_colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> tuple:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*sat), rng.uniform(*val))
    return int(r * 255), int(g * 255), int(b * 255)


def _jitter(rng: np.random.Generator, colour: tuple, amount: int = 18) -> tuple:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


@dataclass(frozen=True)
class Appearance:
    """Colours and clothing of one person; `part_colours` says which colours each part may show."""

    skin: tuple
    hair: tuple
    shirt: tuple
    shirt_secondary: tuple
    shirt_pattern: str
    pants: tuple
    pants_secondary: tuple
    pants_pattern: str
    shoes: tuple
    long_sleeves: bool
    shorts: bool

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Appearance:
        """A random outfit: saturated or muted shirts, mostly darker trousers, shoes, skin, hair."""
        shirt = _random_colour(rng, (0.2, 0.9), (0.35, 0.95))
        pants = _random_colour(rng, (0.1, 0.7), (0.15, 0.6))
        return cls(
            skin=_jitter(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))]),
            hair=_jitter(rng, HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], 10),
            shirt=shirt, shirt_secondary=_random_colour(rng, (0.0, 0.8), (0.2, 1.0)),
            shirt_pattern=PATTERNS[rng.choice(3, p=(0.5, 0.3, 0.2))],
            pants=pants, pants_secondary=_random_colour(rng, (0.0, 0.5), (0.1, 0.7)),
            pants_pattern=PATTERNS[rng.choice(3, p=(0.8, 0.1, 0.1))],
            shoes=_random_colour(rng, (0.0, 0.4), (0.05, 0.4)),
            long_sleeves=bool(rng.uniform() < 0.6), shorts=bool(rng.uniform() < 0.2),
        )

    def part_colours(self) -> dict[int, tuple[tuple, tuple | None, str]]:
        """Part id -> (base colour, pattern colour or None, pattern) used to draw that part."""
        shirt = (self.shirt, self.shirt_secondary, self.shirt_pattern)
        pants = (self.pants, self.pants_secondary, self.pants_pattern)
        skin = (self.skin, None, 'plain')
        colours = {PART_ID['torso']: shirt, PART_ID['neck']: skin, PART_ID['head']: skin,
                   PART_ID['hair']: (self.hair, None, 'plain'), PART_ID['eyes']: ((30, 24, 22), None, 'plain')}
        for side in 'lr':
            colours[PART_ID[f'{side}_upper_arm']] = shirt
            colours[PART_ID[f'{side}_forearm']] = shirt if self.long_sleeves else skin
            colours[PART_ID[f'{side}_hand']] = skin
            colours[PART_ID[f'{side}_thigh']] = pants
            colours[PART_ID[f'{side}_shin']] = skin if self.shorts else pants
            colours[PART_ID[f'{side}_foot']] = (self.shoes, None, 'plain')
        return colours


@dataclass
class Ground:
    """Ground-plane perspective of a scene: standing height in pixels as a function of foot y."""

    horizon_y: float
    pixels_per_row: float
    foot_y_range: tuple[float, float]
    fixed_height: float | None = None  # no perspective: everyone this tall (far-away distractors)

    @classmethod
    def for_frame(cls, height: int, person_height: tuple[float, float]) -> Ground:
        """Map the nearest feet (bottom of the frame) to the tallest and the farthest to the smallest."""
        near, far = 0.98 * height, 0.45 * height
        low, high = person_height
        if high - low < 1e-6:
            return cls(horizon_y=0.0, pixels_per_row=0.0, foot_y_range=(far, near), fixed_height=low)
        slope = (high - low) / (near - far)
        return cls(horizon_y=far - low / slope, pixels_per_row=slope, foot_y_range=(far, near))

    def height_at(self, foot_y: float) -> float:
        """Standing height in pixels of a person whose feet are at row `foot_y`."""
        if self.fixed_height is not None:
            return self.fixed_height
        return max(8.0, self.pixels_per_row * (foot_y - self.horizon_y))


@dataclass
class PersonTrack:
    """One person over the whole clip (per-frame arrays indexed by frame number)."""

    track_id: int
    annotated: bool  # False for background distractors (they become ignore regions)
    proportions: Proportions
    appearance: Appearance
    motion: str
    foot_xy: np.ndarray  # (F, 2)
    height_px: np.ndarray  # (F,)
    heading: np.ndarray  # (F,) radians, 0 = facing the camera
    angles: list[PoseAngles]

    def at(self, frame: int, camera_offset=(0.0, 0.0)) -> Projected:
        """The projected body in frame `frame`, shifted by the camera's translation."""
        foot = self.foot_xy[frame] - np.asarray(camera_offset)
        angles = self.angles[frame]
        return project(body_points(angles, self.proportions), angles, self.proportions, float(self.heading[frame]),
                       foot, float(self.height_px[frame]))


def smooth_noise(rng: np.random.Generator, t: np.ndarray, frequencies=(0.05, 0.4)) -> np.ndarray:
    """Zero-mean smooth signal with unit-ish amplitude: a sum of three random slow sinusoids."""
    freq = rng.uniform(*frequencies, size=3)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    return np.sin(2 * np.pi * freq[:, None] * t[None] + phase[:, None]).sum(0) / 1.7


def _wrap(angle):
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _walk(rng, config: SynthConfig, ground: Ground, t: np.ndarray, entering: bool, scale: float):
    """Trajectory and gait angles of a walker who turns smoothly and bounces off the depth range."""
    width, dt = config.width, 1.0 / config.fps
    y_far, y_near = ground.foot_y_range
    y = rng.uniform(y_far, y_near)
    h0 = ground.height_at(y) * scale
    if entering:
        from_left = rng.uniform() < 0.5
        x = -0.3 * h0 if from_left else width + 0.3 * h0
        direction = (0.0 if from_left else np.pi) + rng.uniform(-0.4, 0.4)
    else:
        x, direction = rng.uniform(0.05, 0.95) * width, rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(*config.walk_speed)
    stride = rng.uniform(0.75, 0.9)  # body heights per gait cycle
    turn = config.turn_rate * smooth_noise(rng, t)
    phase = rng.uniform(0, 2 * np.pi)
    foot, height, heading, phases = [], [], [], []
    facing = np.pi / 2 - direction
    for k in range(len(t)):
        h = ground.height_at(y) * scale
        foot.append((x, y))
        height.append(h)
        target = np.pi / 2 - direction  # heading that looks along the walking direction
        facing = facing + _wrap(target - facing) * min(1.0, 6.0 * dt)
        heading.append(facing)
        phases.append(phase)
        x += speed * h * np.cos(direction) * dt
        y += 0.35 * speed * h * np.sin(direction) * dt  # depth motion is foreshortened
        if (y < y_far and np.sin(direction) < 0) or (y > y_near and np.sin(direction) > 0):
            direction = -direction
        direction += turn[k] * dt
        phase += 2 * np.pi * speed / stride * dt
    phases = np.asarray(phases)
    swing = rng.uniform(0.6, 1.3)
    amp = 0.25 + 0.25 * speed
    yaw = 0.3 * smooth_noise(rng, t)
    angles = []
    for k, p in enumerate(phases):
        hip = (amp * np.sin(p), -amp * np.sin(p))
        knee = tuple(0.1 + 0.9 * max(0.0, np.cos(q)) ** 1.5 for q in (p, p + np.pi))
        shoulder = (-0.7 * swing * hip[0], -0.7 * swing * hip[1])
        angles.append(PoseAngles(hip_flex=hip, knee=knee, shoulder_flex=shoulder,
                                 elbow=tuple(0.25 + 0.5 * max(0.0, s) for s in shoulder),
                                 lean=0.04 + 0.05 * speed, head_yaw=float(yaw[k])))
    return np.asarray(foot), np.asarray(height), np.asarray(heading), angles


def _stand(rng, config: SynthConfig, t: np.ndarray, exercise: bool):
    """Angles of a person standing (idle, waving, pointing, talking) or exercising (jacks, squats)."""
    gesture = rng.choice(('jacks', 'squat')) if exercise else rng.choice(('idle', 'wave', 'point', 'talk'))
    freq = rng.uniform(0.4, 0.9) if exercise else rng.uniform(0.8, 2.0)
    cycle = 0.5 - 0.5 * np.cos(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))  # 0..1
    sway = 0.08 * smooth_noise(rng, t, (0.1, 0.5))
    arm_bias = rng.uniform(0.0, 0.25, size=2)
    yaw = 0.4 * smooth_noise(rng, t)
    side = int(rng.integers(2))  # the gesturing arm
    angles = []
    for k, c in enumerate(cycle):
        a = PoseAngles(hip_flex=(sway[k], -sway[k]), shoulder_abd=(0.08 + arm_bias[0], 0.08 + arm_bias[1]),
                       shoulder_flex=(sway[k], -sway[k]), head_yaw=float(yaw[k]))
        if gesture == 'jacks':
            a.shoulder_abd = (0.2 + 2.6 * c, 0.2 + 2.6 * c)
            a.hip_abd = (0.03 + 0.3 * c, 0.03 + 0.3 * c)
        elif gesture == 'squat':
            a.hip_flex = (1.4 * c, 1.4 * c)
            a.knee = (2.2 * c + 0.05, 2.2 * c + 0.05)
            a.lean = 0.6 * c
            a.shoulder_flex = (1.3 * c, 1.3 * c)
        else:
            flex, abd, elbow = list(a.shoulder_flex), list(a.shoulder_abd), list(a.elbow)
            if gesture == 'wave':
                abd[side], elbow[side] = 2.2 + 0.2 * np.sin(2 * np.pi * freq * t[k]), 0.5 + 0.5 * c
            elif gesture == 'point':
                flex[side], elbow[side] = 1.45, 0.1
            elif gesture == 'talk':
                flex = [0.3 + 0.3 * c, 0.3 + 0.3 * (1 - c)]
                elbow = [1.3, 1.3]
            a.shoulder_flex, a.shoulder_abd, a.elbow = tuple(flex), tuple(abd), tuple(elbow)
        angles.append(a)
    return str(gesture), angles


def make_people(rng: np.random.Generator, config: SynthConfig, ground: Ground) -> list[PersonTrack]:
    """Sample the clip's annotated people and distractors; track ids count from 0 in each clip."""
    t = np.arange(config.frames) / config.fps
    motions = [m for m in MOTIONS if config.motion_weights.get(m, 0) > 0]
    weights = np.array([config.motion_weights[m] for m in motions], dtype=float)
    count = int(rng.integers(config.people[0], config.people[1] + 1))
    distractors = int(rng.integers(config.distractors[0], config.distractors[1] + 1))
    people = []
    for index in range(count + distractors):
        person_rng = np.random.default_rng(rng.integers(2**63))
        annotated = index < count
        motion = str(motions[person_rng.choice(len(motions), p=weights / weights.sum())]) if annotated else 'walk'
        scale = person_rng.uniform(0.85, 1.1)
        if annotated:
            person_ground = ground
        else:  # far away: small, near the top of the walkable area, no perspective growth
            small = person_rng.uniform(*config.distractor_height)
            far = ground.foot_y_range[0]
            person_ground = Ground(horizon_y=0.0, pixels_per_row=0.0, foot_y_range=(far - small, far + small),
                                   fixed_height=small)
        if motion == 'walk':
            entering = person_rng.uniform() < config.entering_fraction
            foot, height, heading, angles = _walk(person_rng, config, person_ground, t, entering, scale)
        else:
            y = person_rng.uniform(*person_ground.foot_y_range)
            h = person_ground.height_at(y) * scale
            drift = 0.02 * h * np.stack([smooth_noise(person_rng, t), 0.3 * smooth_noise(person_rng, t)], 1)
            foot = np.array([person_rng.uniform(0.1, 0.9) * config.width, y]) + drift
            height = np.full(len(t), h)
            heading = person_rng.uniform(-np.pi, np.pi) + 0.8 * smooth_noise(person_rng, t, (0.02, 0.15))
            motion, angles = _stand(person_rng, config, t, exercise=motion == 'exercise')
        people.append(PersonTrack(track_id=index, annotated=annotated, proportions=Proportions.sample(person_rng),
                                  appearance=Appearance.sample(person_rng), motion=motion, foot_xy=foot,
                                  height_px=height, heading=heading, angles=angles))
    return people
