"""PoseTrack per-joint AP (poseval's definition) against hand-computed cases."""
from pathlib import Path

import numpy as np
import pytest

from starpose_testing.posetrack_fixtures import person_keypoints
from starpose_training.metrics.poseval import (
    POSEVAL_JOINTS,
    EvaluationInputError,
    PoseTrackAP,
    evaluate_posetrack_ap,
    voc_ap,
)
from starpose_training.posetrack import PoseTrackImage, PoseTrackPerson, PoseTrackVideo

HEAD_BOX = (0.0, 0.0, 6.0, 8.0)  # diagonal 10 -> head size 6 px -> PCKh@0.5 radius 3 px
JOINT = {name: i for i, (name, _) in enumerate(POSEVAL_JOINTS)}


def person(x0, y0=30.0, scores=1.0, track_id=0, gt=True) -> PoseTrackPerson:
    keypoints = np.asarray(person_keypoints(x0, y0), dtype=np.float64).reshape(17, 3)
    return PoseTrackPerson(id=track_id, image_id=0, track_id=track_id, keypoints=keypoints,
                           bbox_xywh=np.array([x0 - 10, y0 - 2, 20, 56.0]),
                           bbox_head_xywh=np.array(HEAD_BOX) if gt else None,
                           scores=None if gt or scores is None else np.broadcast_to(scores, (17,)).astype(float))


def video(frames: list[list[PoseTrackPerson]], ignore: dict | None = None, name='seq') -> PoseTrackVideo:
    images = [PoseTrackImage(id=i, file_name=f'images/val/{name}/{i:06d}.jpg', vid_id='1', frame_id=i,
                             nframes=len(frames), is_labeled=bool(people),
                             ignore_regions=[np.asarray(p, float) for p in (ignore or {}).get(i, [])])
              for i, people in enumerate(frames)]
    return PoseTrackVideo(name=name, source=Path(f'{name}.json'), images=images,
                          people={i: people for i, people in enumerate(frames) if people})


def ap_of(gt_frames, pred_frames, ignore=None) -> PoseTrackAP:
    return evaluate_posetrack_ap([(video(gt_frames, ignore), video(pred_frames))])


def test_perfect_predictions_score_100():
    result = ap_of([[person(50), person(90, track_id=1)], [], [person(52)]],
                   [[person(50, gt=False), person(90, gt=False)], [], [person(52, gt=False)]])
    assert result.parts == {name: 100.0 for name in ('Head', 'Shou', 'Elb', 'Wri', 'Hip', 'Knee', 'Ankl', 'Total')}
    assert result.frames == 2 and (result.num_gt_joints == 3).all()


def test_missed_person_halves_recall():
    result = ap_of([[person(50), person(90, track_id=1)]], [[person(90, gt=False)]])
    np.testing.assert_allclose(result.ap, 50.0)
    np.testing.assert_allclose(result.recall, 50.0)
    np.testing.assert_allclose(result.precision, 100.0)
    assert result.parts['Total'] == pytest.approx(50.0)


@pytest.mark.parametrize('fp_score, expected', [(0.5, 100.0), (0.95, 50.0)])
def test_false_positive_costs_by_rank(fp_score, expected):
    # A prediction far from every GT person is a false positive for each of its joints; ranked below
    # the true positive it costs nothing (P = [1, .5], R = [1, 1]); ranked above, AP = 1 x 0.5.
    result = ap_of([[person(50)]], [[person(50, scores=0.9, gt=False), person(120, scores=fp_score, gt=False)]])
    np.testing.assert_allclose(result.ap, expected)
    np.testing.assert_allclose(result.precision, 50.0)


def test_joint_in_ignore_region_is_removed():
    wrong = person(50, gt=False)
    wrist = 9  # left_wrist channel; GT at (42, 58)
    wrong.keypoints[wrist, :2] = (30, 90)
    wrong.scores = np.full(17, 0.9)
    wrong.scores[wrist] = 0.5
    gt = [[person(50)], [person(50)]]
    pred = [[person(50, gt=False)], [wrong]]
    plain = ap_of(gt, pred)
    # Without the region: left wrist has a TP (score 1) then an FP (0.5) over 2 GT -> P [1, .5], R [.5, .5].
    assert plain.ap[JOINT['left_wrist']] == pytest.approx(50.0)
    region = {1: [[(35, 50), (50, 50), (50, 100), (25, 100)]]}  # covers GT (42, 58) and prediction (30, 90)
    ignored = ap_of(gt, pred, ignore=region)
    assert ignored.ap[JOINT['left_wrist']] == pytest.approx(100.0)
    assert ignored.num_gt_joints[JOINT['left_wrist']] == 1 and ignored.num_gt_joints[JOINT['nose']] == 2
    assert ignored.parts['Total'] == pytest.approx(100.0)


def test_pckh_threshold_is_half_head_size():
    # head size = 0.6 x diag(6, 8) = 6 -> a joint matches within 3 px.
    near, far = person(50, gt=False), person(50, gt=False)
    near.keypoints[0, 0] += 2.99
    far.keypoints[0, 0] += 3.01
    assert ap_of([[person(50)]], [[near]]).ap[JOINT['nose']] == pytest.approx(100.0)
    result = ap_of([[person(50)]], [[far]])
    assert result.ap[JOINT['nose']] == 0.0
    assert result.parts['Head'] == pytest.approx(200 / 3)  # mean(head_top 100, neck 100, nose 0)


def test_unlabeled_frames_and_missing_scores():
    # Predictions on frames without GT people are dropped (poseval's cleanup), not false positives.
    result = ap_of([[person(50)], []], [[person(50, gt=False)], [person(70, gt=False)]])
    assert result.parts['Total'] == 100.0
    # A prediction without scores ranks at -9999, below every scored one.
    unscored = ap_of([[person(50)]], [[person(50, scores=None, gt=False), person(120, scores=0.1, gt=False)]])
    np.testing.assert_allclose(unscored.ap, 50.0)


def test_each_gt_takes_one_prediction_by_pckh():
    # Two predictions near one GT: the one with more matched joints wins, the other is a FP.
    good, half = person(50, scores=0.5, gt=False), person(50, scores=0.9, gt=False)
    half.keypoints[5:, 0] += 20  # only the head joints still match
    result = ap_of([[person(50)]], [[good, half]])
    # The GT takes `good` (15/15 joints) despite its lower score, so every joint of `half` is a false
    # positive ranked first: P = [0, .5], R = [0, 1] -> AP 50 on every joint, recall 100.
    np.testing.assert_allclose(result.ap, 50.0)
    np.testing.assert_allclose(result.recall, 100.0)


def test_voc_ap_matches_hand_computation():
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_frame_mismatch_errors_name_the_file():
    with pytest.raises(EvaluationInputError, match='# prediction frames 1 <> # GT frames 2'):
        ap_of([[person(50)], []], [[]])
    with pytest.raises(EvaluationInputError, match='is not GT frame'):
        evaluate_posetrack_ap([(video([[person(50)]]), video([[]], name='other'))])
    headless = person(50)
    headless.bbox_head_xywh = None
    with pytest.raises(EvaluationInputError, match="no 'bbox_head'"):
        ap_of([[headless]], [[]])


def test_table_and_json_layout():
    result = ap_of([[person(50)]], [[person(50, gt=False)]])
    header, row = result.table().splitlines()
    assert header.split('&')[1:] == [' Head ', ' Shou ', ' Elb  ', ' Wri  ', ' Hip  ', ' Knee ', ' Ankl ', ' Total\\\\']
    assert row.count('100.0') == 8
    payload = result.to_json()
    assert len(payload['ap']) == 16 and payload['names']['15'] == 'total' and payload['names']['12'] == 'neck'


def test_people_in_unlabeled_frames_are_not_scored():
    # A split that scores a subset of frames marks the rest unlabeled; their GT people are no misses.
    gt = video([[person(50)], [person(60)]])
    gt.images[1].is_labeled = False
    predictions = video([[person(50, gt=False)], []])
    result = evaluate_posetrack_ap([(gt, predictions)])
    assert result.parts['Total'] == pytest.approx(100.0) and result.frames == 1
    gt.images[1].is_labeled = True
    assert evaluate_posetrack_ap([(gt, predictions)]).parts['Total'] == pytest.approx(50.0)
