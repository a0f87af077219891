"""Accuracy of a replay against a PoseTrack JSON of the same clip: OKS AP, PoseTrack AP, PSNR/SSIM.

The bag tools may use the training metrics (the layers allow it); the node never does.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from starpose_model.crops import warp_crop
from starpose_ros.bag_tools.bag_source import BagEvalError
from starpose_ros.core.backends.base import SR_HEIGHT, SR_WIDTH
from starpose_ros.core.types import Detection, FrameResult


def load_ground_truth(path):
    """The one video of a PoseTrack JSON sidecar (the bag's clip)."""
    from starpose_training.posetrack import PoseTrackFormatError, read_posetrack_file

    try:
        videos = read_posetrack_file(path)
    except (PoseTrackFormatError, OSError, ValueError) as error:
        raise BagEvalError(f'ground truth: {error}') from error
    if len(videos) != 1:
        raise BagEvalError(f'ground truth {path} holds {len(videos)} videos; give the JSON of the bag\'s clip only')
    return videos[0]


def ground_truth_detections(video, index: int) -> list[Detection]:
    """Boxes (and track ids) of the annotated people of GT frame `index`."""
    if index >= len(video.images):
        return []
    return [Detection(tuple(float(v) for v in person.bbox_xywh), None if person.track_id is None
                      else str(person.track_id), 1.0)
            for person in video.people_in(video.images[index]) if person.bbox_xywh is not None]


def quality(result: FrameResult) -> list[tuple[float, float]]:
    """PSNR/SSIM of each SR crop against the camera image resampled into the same HR crop."""
    from starpose_training.metrics.image_quality import psnr, ssim

    values = []
    for person in result.persons:
        reference = warp_crop(result.image_rgb, person.image_to_crop, (SR_HEIGHT, SR_WIDTH))
        values.append((psnr(person.sr_crop, reference), ssim(person.sr_crop, reference)))
    return values


def accuracy(poses: dict, quality: list[tuple[float, float]], frames: int, gt_video, layout: str
             ) -> tuple[dict, tuple[list[str], list[float]] | None]:
    """OKS AP, PoseTrack AP (+ per joint) over the first `frames` frames, PSNR/SSIM over all persons.

    `poses`: image index -> (track id, keypoints, score) per person; `quality`: (PSNR, SSIM) per person.
    """
    from starpose_training.metrics.oks import evaluate_oks
    from starpose_training.metrics.poseval import POSEVAL_JOINTS, EvaluationInputError, evaluate_posetrack_ap
    from starpose_training.posetrack import PoseTrackPerson, PoseTrackVideo

    if len(gt_video.images) < frames:
        raise BagEvalError(f'ground truth {gt_video.source} has {len(gt_video.images)} frames, the bag {frames} '
                           'images: they must be the same clip (frame k of the bag = frame k of the JSON)')
    images = gt_video.images[:frames]
    ids = {image.id for image in images}
    gt = PoseTrackVideo(gt_video.name, gt_video.source, images, {i: p for i, p in gt_video.people.items() if i in ids},
                        gt_video.version)
    predictions = {}
    track_numbers: dict[str, int] = {}  # PoseTrack wants integer ids; ours are strings ('t3', upstream '7', ...)
    for index, image in enumerate(images):
        predictions[image.id] = [
            PoseTrackPerson(id=None, image_id=image.id, track_id=track_numbers.setdefault(track, len(track_numbers)),
                            keypoints=keypoints.astype(np.float64), scores=keypoints[:, 2].astype(np.float64),
                            score=score) for track, keypoints, score in poses.get(index, [])]
    prediction = PoseTrackVideo(gt_video.name, Path('predictions'), images, predictions, gt_video.version)
    result = {}
    if layout != 'posetrack':
        result['note'] = (f'The model outputs the {layout!r} keypoint layout and the ground truth is PoseTrack: '
                            'slots 1/2 (eyes vs head_bottom/head_top) are compared as they are.')
    try:
        result.update({f'OKS {k}': v for k, v in evaluate_oks([(gt, prediction)]).items()})
        posetrack = evaluate_posetrack_ap([(gt, prediction)])
    except EvaluationInputError as error:
        result['note'] = f'accuracy not computed: {error}'
        return result, None
    result.update({f'PoseTrack AP {k}': v for k, v in posetrack.parts.items()})
    if quality:
        result['PSNR (dB)'] = float(np.mean([q[0] for q in quality if math.isfinite(q[0])] or [math.nan]))
        result['SSIM'] = float(np.mean([q[1] for q in quality]))
    names = [name for name, _ in POSEVAL_JOINTS]
    return result, (names, [float(v) for v in posetrack.ap])
