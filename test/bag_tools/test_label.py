"""`starpose-label`: teacher labels written as PoseTrack18 that the readers, training and starpose-eval take.

The labelling loop (detector -> tracker -> teacher -> confident-pose filter -> PoseTrack file) is
run on the committed real fixture with a known detector and a teacher that answers the fixture's
own reference poses (confident for some people, unsure or absent for others), so what must land
in the file is known exactly. BlazePose itself runs in the last test where its extra is installed.
"""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from starpose_ros.bag_tools.label import (
    LabelError,
    LabelPolicy,
    accept,
    blazepose_to_posetrack,
    label_footage,
    main,
    parse_frames,
)
from starpose_ros.core.types import Detection
from starpose_testing.paths import REPO_ROOT
from starpose_training.dataset import PoseTrackWindows
from starpose_training.evaluate import main as eval_main
from starpose_training.posetrack import read_posetrack

FIXTURE = REPO_ROOT / 'test' / 'fixtures' / 'vtest_x4'
TEACHER_PYTHON = REPO_ROOT / '.venv-teacher' / 'bin' / 'python'


def _reference():
    (video,) = read_posetrack(FIXTURE / 'labels.json')
    return video


class _KnownDetector:
    """Boxes of the fixture's reference people, frame by frame (plus one box on nobody)."""

    def __init__(self, video):
        self.frames = iter(video.images)
        self.video = video

    def detect(self, image):
        people = self.video.people_in(next(self.frames))
        return [Detection(tuple(p.bbox_xywh)) for p in people] + [Detection((1.0, 1.0, 10.0, 20.0))]


class _ReferenceTeacher:
    """Answers the reference pose of the person whose box it is given; unsure on every third person."""

    def __init__(self, video):
        self.poses = [(p.bbox_xywh, p.keypoints) for im in video.images for p in video.people_in(im)]
        self.seconds, self.calls, self.asked = 0.0, 0, 0

    def estimate(self, image, box, margin=1.25):
        self.calls += 1
        match = [k for b, k in self.poses if np.allclose(b, box)]
        if not match:
            return None
        self.asked += 1
        keypoints = match[0].copy()
        keypoints[:, 2] = np.where(keypoints[:, 2] > 0, 0.3 if self.asked % 3 == 0 else 0.95, 0.1)
        return keypoints

    def close(self):
        pass


def test_confident_poses_become_labels_the_rest_ignore_regions(tmp_path):
    reference = _reference()
    teacher = _ReferenceTeacher(reference)
    report = label_footage(FIXTURE / 'images', tmp_path, split='val', seq='clip', frames=None,
                           teacher=teacher, detector=_KnownDetector(reference), agreement_every=0)
    (video,) = read_posetrack(tmp_path / 'annotations' / 'val')
    assert len(video.images) == len(reference.images) == report['frames']
    labeled = sum(len(video.people_in(im)) for im in video.images)
    total = sum(len(reference.people_in(im)) for im in reference.images)
    assert labeled == report['labeled_people'] and 0.5 * total < labeled < total  # every third one is unsure
    assert report['ignore_regions'] == total - labeled + len(reference.images)  # + the box on nobody per frame
    for ours, theirs in zip(video.images, reference.images, strict=True):
        assert (tmp_path / ours.file_name).is_file() and ours.is_labeled
        for person in video.people_in(ours):
            truth = min(reference.people_in(theirs), key=lambda p: np.abs(p.keypoints - person.keypoints).sum())
            visible = truth.keypoints[:, 2] > 0
            visible[[3, 4]] = False
            np.testing.assert_allclose(person.keypoints[visible, :2], truth.keypoints[visible, :2])
            assert (person.keypoints[:, 2] == visible).all() and person.track_id is not None
            assert person.bbox_head_xywh[2] > 0
    # Track ids are stable: the same reference person keeps one id over the clip.
    ids = {p.track_id for im in video.images for p in video.people_in(im)}
    assert len(ids) < labeled
    # Training reads it as PoseTrack ...
    windows = PoseTrackWindows(tmp_path / 'annotations' / 'val', tmp_path, window=5, target_frame='last', scale=4)
    assert len(windows) == labeled and windows[0]['lr_frames'].shape == (5, 3, 64, 48)


def test_starpose_eval_scores_the_labels_against_themselves_perfectly(tmp_path, capsys):
    reference = _reference()
    label_footage(FIXTURE / 'images', tmp_path, split='val', seq='clip', frames=None, agreement_every=0,
                  teacher=_ReferenceTeacher(reference), detector=_KnownDetector(reference))
    annotations = tmp_path / 'annotations' / 'val'
    assert eval_main(['posetrack', '--groundTruth', str(annotations), '--predictions', str(annotations),
                      '--evalPoseEstimation', '--outputDir', str(tmp_path / 'eval')]) == 0
    assert 'Total' in capsys.readouterr().out
    total = json.loads((tmp_path / 'eval' / 'total_AP_metrics.json').read_text())
    assert total['ap'][-1] == pytest.approx(100.0)


def test_blazepose_landmarks_map_to_posetrack_channels():
    marks = np.zeros((33, 3))
    marks[:, 2] = 0.9
    marks[0] = (50, 20, 0.8)                      # nose
    marks[[2, 5]] = [(46, 18, 0.9), (54, 18, 0.7)]  # eyes
    marks[[9, 10]] = [(47, 24, 0.9), (53, 24, 0.9)]  # mouth
    marks[11] = (40, 40, 0.6)                     # left shoulder
    marks[28] = (55, 120, 0.5)                    # right ankle
    out = blazepose_to_posetrack(marks)
    np.testing.assert_allclose(out[0], (50, 20, 0.8))
    np.testing.assert_allclose(out[1], (50, 24 + 0.7 * 6, 0.7))   # chin below the mouth
    np.testing.assert_allclose(out[2], (50, 18 - 1.7 * 6, 0.7))   # crown above the eyes
    assert (out[[3, 4]] == 0).all()                               # ears: PoseTrack never labels them
    np.testing.assert_allclose(out[5], (40, 40, 0.6))
    np.testing.assert_allclose(out[16], (55, 120, 0.5))


def test_accept_needs_confidence_and_the_torso_in_the_box():
    pose = np.zeros((17, 3))
    pose[5:, :2] = [50, 50]
    pose[5:, 2] = 0.9
    assert accept(pose, (0, 0, 100, 100), LabelPolicy())
    assert not accept(pose, (60, 60, 100, 100), LabelPolicy())  # a neighbour's pose
    pose[5:, 2] = 0.4
    assert not accept(pose, (0, 0, 100, 100), LabelPolicy())
    assert not accept(None, (0, 0, 100, 100), LabelPolicy())


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main([str(tmp_path / 'missing.avi'), '--out', str(tmp_path / 'o')]) == 1
    assert capsys.readouterr().err.strip().count('\n') == 0
    with pytest.raises(LabelError, match='START:STOP'):
        parse_frames('10-20')


@pytest.mark.skipif(not TEACHER_PYTHON.is_file(), reason='teacher extra not installed (bash scripts/setup_teacher.sh)')
def test_blazepose_runs_as_a_method_on_the_fixture(tmp_path):
    out = tmp_path / 'teacher.json'
    done = subprocess.run([str(TEACHER_PYTHON), '-m', 'starpose_ros.bag_tools.label', str(FIXTURE / 'images'),
                           '--boxes', str(FIXTURE / 'labels.json'), '--out', str(out)],
                          capture_output=True, text=True, check=True)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    (predicted,) = read_posetrack(out)
    assert len(predicted.images) == len(_reference().images)
    assert summary['answered'] == sum(len(predicted.people_in(im)) for im in predicted.images) > 0
    assert summary['ms_per_person'] > 0
