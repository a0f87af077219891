"""PoseTrack's per-joint AP, following the definition of the official evaluation (poseval).

Reference: github.com/leonid-pishchulin/poseval, ``poseval/evaluateAP.py`` and
``poseval/eval_helpers.py`` (``assignGTmulti``, ``computeRPC``, ``VOCap``, ``getCum``), with
PoseTrack18 files converted as its ``convert.py`` does. Re-implemented here because poseval does
not install alongside numpy 2. The definition, step by step:

1. Only the GT's labeled frames are scored; frames whose ground truth lists no person are
   dropped, with their predictions.
2. A joint is present when it is not written as (0, 0, visibility 0); the ears are not among
   poseval's 15 joints. Joints (of GT and predictions) strictly inside an ignore region of the
   frame are removed.
3. Distance of a predicted to a GT joint = Euclidean pixels / head size, head size = 0.6 x the
   diagonal of the GT ``bbox_head``; a joint matches when the distance is <= 0.5 (PCKh@0.5).
4. Each prediction keeps only its best GT person (highest fraction of that GT's joints matched);
   each GT person then takes the prediction with the highest such fraction (first on ties);
   zero matched joints is no match. Joints of a matched prediction are true positives where they
   match; every joint of an unmatched prediction is a false positive. Missing scores count as -9999.
5. Per joint: detections of all frames ranked by score, precision/recall, VOC AP (area under the
   monotone precision envelope); no predictions -> 0; no GT joints -> NaN.
6. Head = mean(head_top, head_bottom ("neck"), nose), Shou, Elb, Wri, Hip, Knee, Ankl = mean of
   left/right; Total = mean of the 15 joint APs (NaN ones left out).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from starpose_training.posetrack import PoseTrackImage, PoseTrackPerson, PoseTrackVideo

PCKH_THRESHOLD = 0.5
HEAD_SIZE_FACTOR = 0.6
MISSING_SCORE = -9999.0

# poseval's 15 joints (its own order, used in its JSON output) -> PoseTrack/COCO-order channel.
POSEVAL_JOINTS = (
    ('right_ankle', 16), ('right_knee', 14), ('right_hip', 12), ('left_hip', 11), ('left_knee', 13),
    ('left_ankle', 15), ('right_wrist', 10), ('right_elbow', 8), ('right_shoulder', 6),
    ('left_shoulder', 5), ('left_elbow', 7), ('left_wrist', 9), ('neck', 1), ('nose', 0), ('head_top', 2),
)
CHANNELS = np.array([channel for _, channel in POSEVAL_JOINTS])
PARTS = {
    'Head': ('head_top', 'neck', 'nose'),
    'Shou': ('right_shoulder', 'left_shoulder'),
    'Elb': ('right_elbow', 'left_elbow'),
    'Wri': ('right_wrist', 'left_wrist'),
    'Hip': ('right_hip', 'left_hip'),
    'Knee': ('right_knee', 'left_knee'),
    'Ankl': ('right_ankle', 'left_ankle'),
}
PART_COLUMNS = (*PARTS, 'Total')


class EvaluationInputError(ValueError):
    """Ground truth and predictions cannot be evaluated together (names the file and the problem)."""


@dataclass
class _Poses:
    """The people of one frame in poseval's 15-joint order."""

    points: np.ndarray  # (P, 15, 2)
    present: np.ndarray  # (P, 15) bool
    scores: np.ndarray | None = None  # (P, 15) predictions only
    head_size: np.ndarray | None = None  # (P,) GT only


@dataclass
class PoseTrackAP:
    """Per-joint AP / precision / recall (percent, poseval's joint order) and the per-part table."""

    ap: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    num_gt_joints: np.ndarray
    frames: int
    parts: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        names = [name for name, _ in POSEVAL_JOINTS]
        self.parts = {part: float(np.mean([self.ap[names.index(j)] for j in joints])) for part, joints in PARTS.items()}
        self.parts['Total'] = _nanmean(self.ap)

    def to_json(self) -> dict:
        """The layout of poseval's ``total_AP_metrics.json`` (16 entries: 15 joints + total) plus the part table."""
        names = {str(i): name for i, (name, _) in enumerate(POSEVAL_JOINTS)}
        names[str(len(POSEVAL_JOINTS))] = 'total'
        return {
            'ap': [*map(float, self.ap), _nanmean(self.ap)],
            'pre': [*map(float, self.precision), _nanmean(self.precision)],
            'rec': [*map(float, self.recall), _nanmean(self.recall)],
            'names': names,
            'parts': self.parts,
            'num_gt_joints': [int(n) for n in self.num_gt_joints],
            'frames': self.frames,
        }

    def table(self) -> str:
        """The per-part table as poseval prints it (LaTeX-style row, one decimal)."""
        header = '& ' + ' & '.join(f'{c:<4}' for c in PART_COLUMNS[:-1]) + ' & Total\\\\'
        row = '&' + ' &'.join(f'{v:>5.1f}' for v in self.parts.values()) + ' \\\\'
        return f'{header}\n{row}'


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float('nan')


def _present(person: PoseTrackPerson) -> np.ndarray:
    return person.annotated[CHANNELS]


def _inside(points: np.ndarray, polygons: list[np.ndarray]) -> np.ndarray:
    """(N,) bool: point strictly inside any polygon (a point on the edge is outside, as in shapely)."""
    inside = np.zeros(len(points), dtype=bool)
    for polygon in polygons:
        if len(polygon) < 3:
            continue
        contour = polygon.astype(np.float32).reshape(-1, 1, 2)
        inside |= np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), False) > 0 for x, y in points])
    return inside


def _frame_poses(people: list[PoseTrackPerson], image: PoseTrackImage, is_gt: bool, source) -> _Poses:
    count = len(people)
    points = np.zeros((count, len(CHANNELS), 2))
    present = np.zeros((count, len(CHANNELS)), dtype=bool)
    scores = np.full((count, len(CHANNELS)), MISSING_SCORE)
    head_size = np.zeros(count)
    for p, person in enumerate(people):
        points[p] = person.keypoints[CHANNELS, :2]
        present[p] = _present(person)
        if image.ignore_regions:
            present[p] &= ~_inside(points[p], image.ignore_regions)
        if person.scores is not None:
            scores[p] = person.scores[CHANNELS]
        if is_gt:
            if person.bbox_head_xywh is None:
                raise EvaluationInputError(f"{source}: GT person {person.id} in image {image.id} has no 'bbox_head' "
                                           '(needed for the head size)')
            head_size[p] = HEAD_SIZE_FACTOR * np.hypot(*person.bbox_head_xywh[2:])
    return _Poses(points, present, None if is_gt else scores, head_size if is_gt else None)


def _assign(gt: _Poses, pred: _Poses, threshold: float) -> np.ndarray:
    """(P_pred, 15) bool true-positive labels of the predicted joints (poseval's greedy PCKh assignment)."""
    labels = np.zeros(pred.present.shape, dtype=bool)
    if not len(gt.present) or not len(pred.present):
        return labels
    both = pred.present[:, None, :] & gt.present[None, :, :]
    with np.errstate(divide='ignore', invalid='ignore'):
        dist = np.linalg.norm(pred.points[:, None] - gt.points[None], axis=-1) / gt.head_size[None, :, None]
    match = both & (dist <= threshold)
    gt_joints = gt.present.sum(axis=1)
    pck = match.sum(axis=2) / np.maximum(gt_joints, 1)[None, :]
    best_gt = pck.argmax(axis=1)
    kept = np.zeros_like(pck)
    rows = np.arange(len(pck))
    kept[rows, best_gt] = pck[rows, best_gt]
    best_pred = kept.argmax(axis=0)
    for g, p in enumerate(best_pred):
        if kept[p, g] > 0:
            labels[p] = match[p, g]
    return labels


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone (right-to-left maximum) precision envelope of a ranked list."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def pair_frames(gt_video: PoseTrackVideo, pred_video: PoseTrackVideo):
    """Yield (gt image, pred image) of the GT's labeled frames; both videos must list the same frames.

    Only labeled frames are scored, as poseval does: people written into an unlabeled GT frame
    (PoseTrack21 boxes without keypoints, or a split that scores a subset of frames) never count
    as misses.
    """
    if len(gt_video.images) != len(pred_video.images):
        raise EvaluationInputError(f'{pred_video.source}: # prediction frames {len(pred_video.images)} <> '
                                   f'# GT frames {len(gt_video.images)} of {gt_video.source}')
    for gt_image, pred_image in zip(gt_video.images, pred_video.images, strict=True):
        if gt_image.file_name != pred_image.file_name:
            raise EvaluationInputError(f'{pred_video.source}: frame {pred_image.file_name!r} is not GT frame '
                                       f'{gt_image.file_name!r} of {gt_video.source} (same frames, same order)')
        if gt_image.is_labeled is not False:
            yield gt_image, pred_image


def evaluate_posetrack_ap(pairs: list[tuple[PoseTrackVideo, PoseTrackVideo]],
                          threshold: float = PCKH_THRESHOLD) -> PoseTrackAP:
    """PoseTrack per-joint AP (poseval) over (GT video, prediction video) pairs."""
    scores = [[] for _ in CHANNELS]
    labels = [[] for _ in CHANNELS]
    num_gt = np.zeros(len(CHANNELS), dtype=np.int64)
    frames = 0
    for gt_video, pred_video in pairs:
        for gt_image, pred_image in pair_frames(gt_video, pred_video):
            gt_people = gt_video.people_in(gt_image)
            if not gt_people:
                continue
            frames += 1
            gt = _frame_poses(gt_people, gt_image, True, gt_video.source)
            pred = _frame_poses(pred_video.people_in(pred_image), gt_image, False, pred_video.source)
            frame_labels = _assign(gt, pred, threshold)
            num_gt += gt.present.sum(axis=0)
            for j in range(len(CHANNELS)):
                has = pred.present[:, j]
                scores[j].append(pred.scores[has, j])
                labels[j].append(frame_labels[has, j])

    ap, precision, recall = (np.zeros(len(CHANNELS)) for _ in range(3))
    for j in range(len(CHANNELS)):
        joint_scores, joint_labels = np.concatenate(scores[j]), np.concatenate(labels[j])
        if not len(joint_scores):
            continue
        order = joint_scores.argsort()[::-1]
        true_positives = np.cumsum(joint_labels[order])
        with np.errstate(divide='ignore', invalid='ignore'):
            rec = true_positives / num_gt[j]
        prec = true_positives / np.arange(1, len(order) + 1)
        ap[j] = np.nan if num_gt[j] == 0 else 100 * voc_ap(rec, prec)
        precision[j], recall[j] = 100 * prec[-1], 100 * rec[-1]
    return PoseTrackAP(ap, precision, recall, num_gt, frames)
