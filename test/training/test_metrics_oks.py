"""OKS keypoint AP/AR: our PoseTrack wrapper equals a direct pycocotools COCOeval run; PSNR/SSIM."""
import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from starpose_model.keypoints import OKS_SIGMAS
from starpose_testing.posetrack_fixtures import make_video, write_dataset
from starpose_training.metrics.image_quality import ImageQuality, psnr, ssim
from starpose_training.metrics.oks import evaluate_oks
from starpose_training.posetrack import read_posetrack


def _predictions(gt_video: dict, seed: int) -> dict:
    """Noisy copies of the GT people, a few dropped, one false positive, random scores."""
    rng = np.random.default_rng(seed)
    pred = {'images': copy.deepcopy(gt_video['images']), 'annotations': []}
    for k, ann in enumerate(gt_video['annotations']):
        if k % 4 == 3:
            continue
        kps = np.asarray(ann['keypoints'], float).reshape(17, 3)
        kps[:, :2] += rng.normal(0, 1.0 + k % 3, (17, 2))
        pred['annotations'].append({'image_id': ann['image_id'], 'track_id': ann['track_id'],
                                    'keypoints': kps.ravel().tolist(), 'scores': rng.uniform(0.2, 1, 17).tolist()})
    fp = np.asarray(gt_video['annotations'][0]['keypoints'], float).reshape(17, 3)
    fp[:, 0] += 30
    pred['annotations'].append({'image_id': gt_video['annotations'][0]['image_id'], 'track_id': 9,
                                'keypoints': fp.ravel().tolist(), 'score': 0.7})
    return pred


def _direct_cocoeval(gt_video: dict, pred: dict) -> np.ndarray:
    """COCOeval run by hand on the same people, written straight from the JSON dicts."""
    labeled = {ann['image_id'] for ann in gt_video['annotations']}
    annotations = []
    for ann in gt_video['annotations']:
        kps = np.asarray(ann['keypoints'], float).reshape(17, 3)
        kps[[3, 4]] = 0
        kps[:, 2] = np.where(kps[:, 2] > 0, 2, 0)
        x, y, w, h = ann['bbox']
        annotations.append({'id': len(annotations) + 1, 'image_id': ann['image_id'], 'category_id': 1, 'iscrowd': 0,
                            'keypoints': kps.ravel().tolist(), 'num_keypoints': int((kps[:, 2] > 0).sum()),
                            'bbox': ann['bbox'], 'area': w * h})
    results = []
    for ann in pred['annotations']:
        if ann['image_id'] not in labeled:
            continue
        score = ann.get('score', np.mean(np.delete(ann.get('scores', [1.0] * 17), [3, 4])))
        results.append({'image_id': ann['image_id'], 'category_id': 1, 'keypoints': ann['keypoints'],
                        'score': float(score)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {'images': [{'id': i} for i in sorted(labeled)], 'annotations': annotations,
                        'categories': [{'id': 1, 'name': 'person'}]}
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), iouType='keypoints')
        evaluator.params.kpt_oks_sigmas = np.array(OKS_SIGMAS)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return 100 * evaluator.stats


def _pairs(tmp_path, gt_video, pred):
    gt_dir = write_dataset(tmp_path / 'gt', [gt_video], write_frames=False)
    pred_dir = write_dataset(tmp_path / 'pred', [pred], write_frames=False)
    return list(zip(read_posetrack(gt_dir), read_posetrack(pred_dir), strict=True))


@pytest.mark.parametrize('seed', [0, 1])
def test_wrapper_equals_direct_cocoeval(tmp_path, seed):
    gt_video = make_video(nframes=8, labeled=(1, 2, 3, 5, 6), people_per_frame=2)
    pred = _predictions(gt_video, seed)
    result = evaluate_oks(_pairs(tmp_path, gt_video, pred))
    stats = _direct_cocoeval(gt_video, pred)
    assert result == pytest.approx({'AP@0.5': stats[1], 'AP@0.75': stats[2], 'mAP': stats[0], 'AR': stats[5]})
    assert 0 < result['mAP'] < 100


def test_perfect_predictions_and_ears_do_not_count(tmp_path):
    gt_video = make_video(people_per_frame=2)
    pred = {'images': gt_video['images'], 'annotations': copy.deepcopy(gt_video['annotations'])}
    assert evaluate_oks(_pairs(tmp_path / 'a', gt_video, pred)) == pytest.approx(
        {'AP@0.5': 100, 'AP@0.75': 100, 'mAP': 100, 'AR': 100})
    # Ear positions written into the GT (which PoseTrack never annotates) change nothing.
    with_ears = copy.deepcopy(gt_video)
    for ann in with_ears['annotations']:
        ann['keypoints'][9:15] = [1, 1, 1, 2, 2, 1]
    assert evaluate_oks(_pairs(tmp_path / 'b', with_ears, pred))['mAP'] == pytest.approx(100)


def test_no_predictions_scores_zero(tmp_path):
    gt_video = make_video()
    pred = {'images': gt_video['images'], 'annotations': []}
    assert evaluate_oks(_pairs(tmp_path, gt_video, pred)) == {'AP@0.5': 0, 'AP@0.75': 0, 'mAP': 0, 'AR': 0}


def test_psnr_ssim_match_closed_forms():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (32, 24, 3), dtype=np.uint8)
    noisy = np.clip(hr.astype(int) + rng.choice([-4, 4], hr.shape), 0, 255).astype(np.uint8)
    mse = np.mean((noisy.astype(float) - hr) ** 2)
    assert psnr(noisy, hr) == pytest.approx(10 * np.log10(255 ** 2 / mse))
    assert psnr(hr, hr) == float('inf') and ssim(hr, hr) == pytest.approx(1.0)
    assert 0 < ssim(noisy, hr) < 1
    quality = ImageQuality()
    quality.update(np.stack([noisy, hr]), np.stack([hr, noisy]))
    assert quality.summary()['PSNR'] == pytest.approx(psnr(noisy, hr))
    with pytest.raises(ValueError, match='uint8'):
        psnr(hr.astype(np.float32), hr.astype(np.float32))


def test_people_in_unlabeled_frames_are_not_scored(tmp_path):
    gt_video = make_video(people_per_frame=2)
    first_frame = gt_video['annotations'][0]['image_id']
    # predictions only for the first frame: recall is partial while every frame is labeled ...
    pred = {'images': gt_video['images'],
            'annotations': [copy.deepcopy(a) for a in gt_video['annotations'] if a['image_id'] == first_frame]}
    assert evaluate_oks(_pairs(tmp_path / 'a', gt_video, pred))['AR'] < 100
    # ... and complete once only the first frame is labeled
    only_first = copy.deepcopy(gt_video)
    for image in only_first['images']:
        image['is_labeled'] = image['id'] == first_frame
    assert evaluate_oks(_pairs(tmp_path / 'b', only_first, pred)) == pytest.approx(
        {'AP@0.5': 100, 'AP@0.75': 100, 'mAP': 100, 'AR': 100})
