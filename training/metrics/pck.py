"""PCK against a reference pose: the share of joints within `alpha` x the reference's torso size.

Torso size is the distance from the shoulders' midpoint to the hips' midpoint of the reference
(PoseTrack/COCO channels 5, 6, 11, 12), so the threshold scales with the person, not the image:
the same person scores the same at full resolution and downscaled x8. Joints are the 12 limb
joints (shoulders to ankles), grouped as shoulders, elbows, wrists, hips, knees, ankles. A person
the method gave no answer for scores 0 on all its reference joints.
"""
from __future__ import annotations

import numpy as np

from starpose_model import crops
from starpose_model.keypoints import NUM_KEYPOINTS

LIMB_JOINTS = tuple(range(5, NUM_KEYPOINTS))
JOINT_GROUPS = {
    'shoulder': (5, 6), 'elbow': (7, 8), 'wrist': (9, 10),
    'hip': (11, 12), 'knee': (13, 14), 'ankle': (15, 16),
}


def torso_size(reference: np.ndarray) -> float | None:
    """Shoulder-midpoint to hip-midpoint distance of a (17, 3) pose; None without all four joints."""
    if not (reference[[5, 6, 11, 12], 2] > 0).all():
        return None
    shoulders = reference[[5, 6], :2].mean(axis=0)
    hips = reference[[11, 12], :2].mean(axis=0)
    size = float(np.linalg.norm(shoulders - hips))
    return size if size > 0 else None


def joint_hits(reference: np.ndarray, predicted: np.ndarray | None, alpha: float = 0.2) -> np.ndarray | None:
    """(17,) float: 1 hit, 0 miss, NaN where the reference has no joint; None when no torso."""
    size = torso_size(reference)
    if size is None:
        return None
    hits = np.full(NUM_KEYPOINTS, np.nan)
    present = reference[:, 2] > 0
    present[:5] = False
    if predicted is None:
        hits[present] = 0.0
        return hits
    distance = np.linalg.norm(np.asarray(predicted)[:, :2] - reference[:, :2], axis=1)
    hits[present] = (distance[present] <= alpha * size).astype(np.float64)
    return hits


class PCKAccumulator:
    """Sums hits per joint over many people; `summary()` gives PCK per joint group and overall."""

    def __init__(self, alpha: float = 0.2):
        self.alpha = alpha
        self.hits = np.zeros(NUM_KEYPOINTS)
        self.counts = np.zeros(NUM_KEYPOINTS)
        self.people = 0
        self.answered = 0

    def add(self, reference: np.ndarray, predicted: np.ndarray | None) -> None:
        """Score one person (`predicted` None: the method gave no pose)."""
        hits = joint_hits(reference, predicted, self.alpha)
        if hits is None:
            return
        self.people += 1
        self.answered += predicted is not None
        present = ~np.isnan(hits)
        self.hits[present] += hits[present]
        self.counts[present] += 1

    def summary(self) -> dict[str, float]:
        """{'pck': over the 12 limb joints, 'pck_<group>': per group, 'answered': share, 'people': n}."""
        def ratio(joints) -> float:
            count = self.counts[list(joints)].sum()
            return float(self.hits[list(joints)].sum() / count) if count else float('nan')
        out = {'pck': ratio(LIMB_JOINTS)}
        out.update({f'pck_{name}': ratio(joints) for name, joints in JOINT_GROUPS.items()})
        out['answered'] = self.answered / self.people if self.people else float('nan')
        out['people'] = self.people
        return out


class MeanPose:
    """The mean reference pose in the crop frame of a box: the floor any model must clear.

    Fitted on (box, keypoints) pairs in the crop frame the node would use for the box
    (`crops.box_to_center_scale`), so it knows where joints sit in a box but looks at no pixel.
    """

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]]):
        points, weights = [], []
        for box, keypoints in pairs:
            center, size = crops.box_to_center_scale(box)
            points.append((keypoints[:, :2] - center) / size)
            weights.append(keypoints[:, 2] > 0)
        if not points:
            raise ValueError('MeanPose needs at least one (box, keypoints) pair')
        points, weights = np.array(points), np.array(weights)[..., None]
        self.mean = (points * weights).sum(axis=0) / np.maximum(weights.sum(axis=0), 1)

    def place(self, box) -> np.ndarray:
        """(17, 3) keypoints of the mean pose in `box` (score 1)."""
        center, size = crops.box_to_center_scale(box)
        return np.hstack([self.mean * size + center, np.ones((NUM_KEYPOINTS, 1))])
