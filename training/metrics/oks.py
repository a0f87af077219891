"""OKS keypoint AP/AR (the paper's AP@0.5, AP@0.75, mAP, AR) through pycocotools' COCOeval.

The PoseTrack ground truth becomes a COCO keypoint set: one image per labeled frame with people,
``area`` = box width x height (PoseTrack publishes no segmentation area), ``num_keypoints`` = the
visible joints. COCOeval only scores GT joints with visibility > 0, and PoseTrack's ears are
always unannotated, so their sigmas never enter the result; the ears' visibility is also forced to
0 here, so a file that writes ear positions still cannot change the score. Sigmas are COCO's
(`starpose_model.keypoints.OKS_SIGMAS`; the head_bottom/head_top slots take the eye values).
Prediction score = the person ``score`` if given, else the mean of its keypoint ``scores`` over
the 15 PoseTrack joints, else 1. Ignore regions are not applied (COCOeval has no such notion;
poseval's AP applies them).
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from starpose_model.keypoints import OKS_SIGMAS, POSETRACK_UNANNOTATED
from starpose_training.metrics.poseval import EvaluationInputError, pair_frames
from starpose_training.posetrack import PoseTrackPerson, PoseTrackVideo

# COCOeval.stats indices of the figures the paper reports.
OKS_STATS = {'AP@0.5': 1, 'AP@0.75': 2, 'mAP': 0, 'AR': 5}
_SCORED = np.setdiff1d(np.arange(len(OKS_SIGMAS)), POSETRACK_UNANNOTATED)


def coco_keypoint_eval(gt: dict, predictions: list[dict], sigmas=OKS_SIGMAS) -> np.ndarray:
    """COCOeval (iouType 'keypoints') of a COCO-format GT dict and result list; returns ``stats`` (10,).

    With no predictions every figure is 0 (COCO's loadRes cannot take an empty list).
    """
    if not predictions:
        return np.zeros(10)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(predictions)
        evaluator = COCOeval(coco_gt, coco_dt, iouType='keypoints')
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats, dtype=np.float64)


def prediction_score(person: PoseTrackPerson) -> float:
    """Person-level ranking score of a prediction (see the module docstring)."""
    if person.score is not None:
        return float(person.score)
    if person.scores is not None:
        return float(person.scores[_SCORED].mean())
    return 1.0


def posetrack_to_coco(pairs: list[tuple[PoseTrackVideo, PoseTrackVideo]]) -> tuple[dict, list[dict]]:
    """COCO-format GT dict and prediction list of (GT video, prediction video) pairs."""
    images, annotations, results = [], [], []
    for gt_video, pred_video in pairs:
        for gt_image, pred_image in pair_frames(gt_video, pred_video):
            gt_people = gt_video.people_in(gt_image)
            if not gt_people:
                continue
            image_id = len(images) + 1
            images.append({'id': image_id, 'file_name': gt_image.file_name})
            for person in gt_people:
                if person.bbox_xywh is None:
                    raise EvaluationInputError(f"{gt_video.source}: GT person {person.id} in image {gt_image.id} "
                                               "has no 'bbox' (needed for the OKS area)")
                keypoints = person.keypoints.copy()
                keypoints[list(POSETRACK_UNANNOTATED)] = 0.0
                keypoints[:, 2] = (keypoints[:, 2] > 0) * 2.0
                annotations.append({
                    'id': len(annotations) + 1, 'image_id': image_id, 'category_id': 1, 'iscrowd': 0,
                    'keypoints': keypoints.ravel().tolist(), 'num_keypoints': int((keypoints[:, 2] > 0).sum()),
                    'bbox': person.bbox_xywh.tolist(), 'area': float(person.bbox_xywh[2] * person.bbox_xywh[3]),
                })
            for person in pred_video.people_in(pred_image):
                keypoints = person.keypoints.copy()
                keypoints[:, 2] = 1.0
                results.append({'image_id': image_id, 'category_id': 1, 'keypoints': keypoints.ravel().tolist(),
                                'score': prediction_score(person)})
    if not annotations:
        raise EvaluationInputError('no ground-truth people in the labeled frames: nothing to evaluate')
    gt = {'images': images, 'annotations': annotations,
          'categories': [{'id': 1, 'name': 'person', 'supercategory': 'person'}]}
    return gt, results


def evaluate_oks(pairs: list[tuple[PoseTrackVideo, PoseTrackVideo]], sigmas=OKS_SIGMAS) -> dict[str, float]:
    """AP@0.5, AP@0.75, mAP (AP@[.5:.95]) and AR, in percent, over (GT video, prediction video) pairs."""
    stats = coco_keypoint_eval(*posetrack_to_coco(pairs), sigmas=sigmas)
    return {name: 100.0 * float(stats[index]) for name, index in OKS_STATS.items()}
