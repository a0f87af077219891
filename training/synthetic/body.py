"""An articulated person: proportions, joint angles -> 3D joints -> projected 2D joints and parts.

The body lives in its own frame (units of standing height, x = the person's left, y = up,
z = forward). A heading angle turns it about the vertical axis and an orthographic projection
puts it in the image, so turning changes the apparent shoulder width and which arm is in front,
as in real footage. Joints come out in PoseTrack channel order (``starpose_model.keypoints``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Part ids inside one person's label-map value (see render.py); order is not drawing order.
PART_NAMES = ('torso', 'neck', 'head', 'hair', 'l_upper_arm', 'l_forearm', 'r_upper_arm', 'r_forearm',
              'l_hand', 'r_hand', 'l_thigh', 'l_shin', 'r_thigh', 'r_shin', 'l_foot', 'r_foot', 'eyes')
PART_ID = {name: k for k, name in enumerate(PART_NAMES)}

# PoseTrack channels (starpose_model.keypoints.POSETRACK_KEYPOINT_NAMES); ears stay unannotated.
NOSE, HEAD_BOTTOM, HEAD_TOP, L_EAR, R_EAR = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Proportions:
    """Segment lengths and widths as fractions of standing height (adult averages, jittered)."""

    shoulder_half: float = 0.115
    hip_half: float = 0.085
    upper_arm: float = 0.175
    forearm: float = 0.15
    thigh: float = 0.245
    shin: float = 0.245
    ankle_height: float = 0.04
    shoulder_height: float = 0.82
    head_radius: float = 0.065
    arm_width: float = 0.055
    leg_width: float = 0.085
    torso_depth: float = 0.15  # apparent torso width seen from the side

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Proportions:
        """A person's build: each length jittered by up to about +-10 %."""
        base = cls()
        jitter = rng.uniform(0.9, 1.1, size=4)
        return cls(shoulder_half=base.shoulder_half * jitter[0], hip_half=base.hip_half * jitter[1],
                   arm_width=base.arm_width * jitter[2], leg_width=base.leg_width * jitter[2],
                   torso_depth=base.torso_depth * jitter[2], head_radius=base.head_radius * jitter[3])


@dataclass
class PoseAngles:
    """Joint angles in radians (flexion forward positive, abduction outward positive)."""

    hip_flex: tuple[float, float] = (0.0, 0.0)  # left, right
    hip_abd: tuple[float, float] = (0.03, 0.03)
    knee: tuple[float, float] = (0.05, 0.05)
    shoulder_flex: tuple[float, float] = (0.0, 0.0)
    shoulder_abd: tuple[float, float] = (0.08, 0.08)
    elbow: tuple[float, float] = (0.2, 0.2)
    lean: float = 0.0  # upper body forward lean
    head_yaw: float = 0.0  # head turn relative to the body


def _direction(flex: float, abd: float, side: float) -> np.ndarray:
    """Unit vector of a limb hanging from its joint: down, swung forward by flex, out by abd."""
    return np.array([side * np.sin(abd), -np.cos(abd) * np.cos(flex), np.cos(abd) * np.sin(flex)])


def _rotate_x(points: np.ndarray, angle: float, pivot: np.ndarray) -> np.ndarray:
    """Tilt points about a horizontal left-right axis through pivot (positive: top goes forward)."""
    c, s = np.cos(angle), np.sin(angle)
    rel = points - pivot
    y = rel[..., 1] * c - rel[..., 2] * s
    z = rel[..., 1] * s + rel[..., 2] * c
    return np.stack([rel[..., 0], y, z], axis=-1) + pivot


def body_points(angles: PoseAngles, prop: Proportions) -> dict[str, np.ndarray]:
    """3D points of the body (body frame, feet on y = 0) for one pose."""
    hip_y = prop.ankle_height + prop.thigh + prop.shin
    pelvis = np.array([0.0, hip_y, 0.0])
    pts: dict[str, np.ndarray] = {'pelvis': pelvis}
    for k, (side, tag) in enumerate(((1.0, 'l'), (-1.0, 'r'))):
        hip = pelvis + [side * prop.hip_half, 0.0, 0.0]
        knee = hip + prop.thigh * _direction(angles.hip_flex[k], angles.hip_abd[k], side)
        ankle = knee + prop.shin * _direction(angles.hip_flex[k] - angles.knee[k], angles.hip_abd[k], side)
        pts.update({f'{tag}_hip': hip, f'{tag}_knee': knee, f'{tag}_ankle': ankle,
                    f'{tag}_toe': ankle + [0.0, -0.025, 0.075]})
    chest = pelvis + [0.0, prop.shoulder_height - hip_y, 0.0]
    upper = {'chest': chest, 'chin': chest + [0.0, 0.05, 0.005]}
    upper['head'] = upper['chin'] + [0.0, prop.head_radius, 0.01]
    upper['head_top'] = upper['head'] + [0.0, 0.85 * prop.head_radius, 0.0]  # inside the drawn head
    yaw = angles.head_yaw
    upper['nose'] = upper['head'] + 0.8 * prop.head_radius * np.array([np.sin(yaw), -0.2, np.cos(yaw)])
    for side, tag in ((1.0, 'l'), (-1.0, 'r')):
        x, z = side * 0.38, 0.85
        upper[f'{tag}_eye'] = upper['head'] + prop.head_radius * np.array(
            [x * np.cos(yaw) + z * np.sin(yaw), 0.1, -x * np.sin(yaw) + z * np.cos(yaw)])
    for k, (side, tag) in enumerate(((1.0, 'l'), (-1.0, 'r'))):
        shoulder = chest + [side * prop.shoulder_half, 0.0, 0.0]
        elbow = shoulder + prop.upper_arm * _direction(angles.shoulder_flex[k], angles.shoulder_abd[k], side)
        wrist = elbow + prop.forearm * _direction(angles.shoulder_flex[k] + angles.elbow[k],
                                                   angles.shoulder_abd[k], side)
        hand = wrist + (wrist - elbow) * (0.035 / prop.forearm)
        upper.update({f'{tag}_shoulder': shoulder, f'{tag}_elbow': elbow, f'{tag}_wrist': wrist, f'{tag}_hand': hand})
    names = list(upper)
    tilted = _rotate_x(np.stack([upper[n] for n in names]), angles.lean, pelvis)
    pts.update(dict(zip(names, tilted, strict=True)))
    # Feet on the ground: the lowest ankle stands at ankle height (gives the walking bob for free).
    lift = min(pts['l_ankle'][1], pts['r_ankle'][1]) - prop.ankle_height
    return {name: p - [0.0, lift, 0.0] for name, p in pts.items()}


@dataclass
class Projected:
    """One person's body in image pixels: PoseTrack joints, drawable parts and extents."""

    joints: np.ndarray  # (17, 2) float, PoseTrack order (ears hold the head centre, never annotated)
    facing_camera: float  # cosine between the face direction and the direction to the camera
    parts: list[tuple[int, np.ndarray, np.ndarray, float]]  # (part id, (n, 2) points, (n,) radii, depth)
    head_center: np.ndarray
    head_radius: float


# (part, start point, end point, width fraction of the proportion's field or a constant)
_CAPSULES = (
    ('neck', 'chest', 'head', 0.55),
    ('l_upper_arm', 'l_shoulder', 'l_elbow', 'arm'), ('l_forearm', 'l_elbow', 'l_wrist', 'arm'),
    ('r_upper_arm', 'r_shoulder', 'r_elbow', 'arm'), ('r_forearm', 'r_elbow', 'r_wrist', 'arm'),
    ('l_thigh', 'l_hip', 'l_knee', 'leg'), ('l_shin', 'l_knee', 'l_ankle', 'leg'),
    ('r_thigh', 'r_hip', 'r_knee', 'leg'), ('r_shin', 'r_knee', 'r_ankle', 'leg'),
    ('l_foot', 'l_ankle', 'l_toe', 'leg'), ('r_foot', 'r_ankle', 'r_toe', 'leg'),
)
# Limbs taper: radius at the start and end joint as a fraction of the limb width.
_TAPER = {'l_upper_arm': (0.55, 0.45), 'r_upper_arm': (0.55, 0.45), 'l_forearm': (0.45, 0.38),
          'r_forearm': (0.45, 0.38), 'l_thigh': (0.6, 0.45), 'r_thigh': (0.6, 0.45), 'l_shin': (0.45, 0.33),
          'r_shin': (0.45, 0.33), 'l_foot': (0.33, 0.28), 'r_foot': (0.33, 0.28)}
_JOINT_POINTS = ('nose', 'chin', 'head_top', 'head', 'head', 'l_shoulder', 'r_shoulder', 'l_elbow', 'r_elbow',
                 'l_wrist', 'r_wrist', 'l_hip', 'r_hip', 'l_knee', 'r_knee', 'l_ankle', 'r_ankle')
MIN_RADIUS_PX = 1.0  # every part covers at least the pixels on its axis, so joints lie on drawn limbs


def project(points: dict[str, np.ndarray], angles: PoseAngles, prop: Proportions, heading: float, foot_xy,
            height_px: float) -> Projected:
    """Turn the body by `heading` (0: facing the camera) and place its feet at `foot_xy` pixels."""
    names = list(points)
    body = np.stack([points[n] for n in names])
    c, s = np.cos(heading), np.sin(heading)
    x = body[:, 0] * c + body[:, 2] * s
    z = -body[:, 0] * s + body[:, 2] * c  # towards the camera
    image = np.stack([foot_xy[0] + x * height_px, foot_xy[1] - body[:, 1] * height_px], axis=1)
    at = {n: image[k] for k, n in enumerate(names)}
    depth = {n: z[k] for k, n in enumerate(names)}
    face = np.array([np.sin(angles.head_yaw), 0.0, np.cos(angles.head_yaw)])  # where the head looks (body frame)
    facing = float(-face[0] * s + face[2] * c)

    def radius(fraction: float) -> float:
        return max(MIN_RADIUS_PX, fraction * height_px)

    parts = []
    for part, start, end, width in _CAPSULES:
        if width == 'arm':
            r0, r1 = (t * prop.arm_width for t in _TAPER[part])
        elif width == 'leg':
            r0, r1 = (t * prop.leg_width for t in _TAPER[part])
        else:
            r0 = r1 = width * prop.head_radius
        parts.append((PART_ID[part], np.stack([at[start], at[end]]), np.array([radius(r0), radius(r1)]),
                      0.5 * (depth[start] + depth[end])))
    # Torso: the shoulder/hip quadrilateral, widened to the body's depth when seen from the side.
    side_radius = radius(0.5 * prop.torso_depth * abs(s))
    quad = np.stack([at['l_shoulder'], at['r_shoulder'], at['r_hip'], at['l_hip']])
    spine = np.stack([0.5 * (at['l_shoulder'] + at['r_shoulder']), 0.5 * (at['l_hip'] + at['r_hip'])])
    parts.append((PART_ID['torso'], np.concatenate([quad, spine]), np.array([0, 0, 0, 0, side_radius, side_radius]),
                  -0.02))
    for side in 'lr':
        parts.append((PART_ID[f'{side}_hand'], at[f'{side}_hand'][None], np.array([radius(0.032)]),
                      depth[f'{side}_hand'] + 0.01))
    # Head: hair all round, the face drawn over it on the side the person looks to (none from behind),
    # eyes where the face is turned to the camera and large enough.
    head_r = radius(prop.head_radius)
    head_depth = depth['head'] + 0.02
    face_x = face[0] * c + face[2] * s  # sideways component of the face direction in the image
    parts.append((PART_ID['hair'], (at['head'] + head_r * np.array([-0.1 * face_x, -0.12]))[None],
                  np.array([1.02 * head_r]), head_depth))
    if facing > -0.3:
        parts.append((PART_ID['head'], (at['head'] + head_r * np.array([0.18 * face_x, 0.12]))[None],
                      np.array([0.86 * head_r]), head_depth + 0.001))
    if facing > 0.3 and head_r >= 5.0:
        for side in 'lr':
            parts.append((PART_ID['eyes'], at[f'{side}_eye'][None], np.array([max(1.0, 0.13 * head_r)]),
                          head_depth + 0.002))
    joints = np.stack([at[n] for n in _JOINT_POINTS])
    return Projected(joints=joints, facing_camera=facing, parts=parts, head_center=at['head'], head_radius=head_r)
