"""Keypoint layouts: names, flip pairs, skeleton edges and OKS sigmas for COCO-17 and PoseTrack.

Both layouts use the same 17 channels. PoseTrack puts head_bottom and head_top where COCO has
the eyes (channels 1 and 2) and never annotates the ears (3 and 4), so the head channels must
not be swapped on a horizontal flip.
"""
from __future__ import annotations

NUM_KEYPOINTS = 17

COCO_KEYPOINT_NAMES = (
    'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear',
    'left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
    'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle',
)
POSETRACK_KEYPOINT_NAMES = (
    'nose', 'head_bottom', 'head_top', 'left_ear', 'right_ear',
    *COCO_KEYPOINT_NAMES[5:],
)
KEYPOINT_NAMES = {'coco': COCO_KEYPOINT_NAMES, 'posetrack': POSETRACK_KEYPOINT_NAMES}

_LIMB_FLIP_PAIRS = ((5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
FLIP_PAIRS = {
    'coco': ((1, 2), (3, 4), *_LIMB_FLIP_PAIRS),
    'posetrack': ((3, 4), *_LIMB_FLIP_PAIRS),
}

# Channels PoseTrack never annotates (the ears): excluded from its metrics and targets.
POSETRACK_UNANNOTATED = (3, 4)

_LIMB_EDGES = ((5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (5, 11), (6, 12), (11, 12),
               (11, 13), (13, 15), (12, 14), (14, 16))
SKELETON_EDGES = {
    'coco': ((0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (0, 6), *_LIMB_EDGES),
    'posetrack': ((2, 1), (1, 0), (1, 5), (1, 6), *_LIMB_EDGES),
}

# COCO's per-keypoint OKS sigmas (cocoapi). PoseTrack evaluations with OKS reuse them; the head
# slots take the nose/eye values.
OKS_SIGMAS = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
              0.107, 0.107, 0.087, 0.087, 0.089, 0.089)


def flip_permutation(layout: str) -> list[int]:
    """Channel permutation that swaps left/right joints for a horizontally flipped image."""
    order = list(range(NUM_KEYPOINTS))
    for left, right in FLIP_PAIRS[layout]:
        order[left], order[right] = right, left
    return order
