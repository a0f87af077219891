"""PoseTrack18/21 readers: per-video and merged JSON, windows, and clear errors on bad input."""
import json

import numpy as np
import pytest

from starpose_testing.posetrack_fixtures import make_video, write_dataset
from starpose_training.posetrack import PoseTrackFormatError, check_frames_exist, read_posetrack


def test_reads_per_video_directory_pt18(tmp_path):
    regions = {2: ([[0, 10, 10, 0]], [[0, 0, 10, 10]])}
    ann_dir = write_dataset(tmp_path, [make_video(ignore_regions=regions),
                                       make_video('000002_other', nframes=4, labeled=(0,), vid_id='000002')])
    videos = read_posetrack(ann_dir)
    assert [v.name for v in videos] == ['000001_fixture', '000002_other']
    video = videos[0]
    assert video.version == 2018
    assert len(video.images) == 6 and [im.frame_id for im in video.images] == sorted(im.frame_id for im in video.images)
    assert [im.is_labeled for im in video.images] == [False, True, True, True, False, False]
    person = video.people_in(video.images[1])[0]
    assert person.keypoints.shape == (17, 3) and person.track_id == 0
    np.testing.assert_allclose(person.bbox_xywh, [41, 28, 20, 56])
    np.testing.assert_allclose(person.bbox_head_xywh, [48, 29, 6, 10])
    assert not person.annotated[3] and not person.annotated[4] and person.annotated[[0, 1, 2, 5, 16]].all()
    assert video.images[2].ignore_regions[0].shape == (4, 2)
    assert video.people_in(video.images[0]) == []
    check_frames_exist(videos, tmp_path)


def test_reads_merged_json_pt21_with_occlusion(tmp_path):
    first = make_video(version=2021)
    first['annotations'][0]['keypoints'][5 * 3 + 2] = 0  # left shoulder annotated but occluded
    path = write_dataset(tmp_path, [first, make_video('000002_other', vid_id='000002', version=2021)], merged=True)
    videos = read_posetrack(path)
    assert [v.name for v in videos] == ['000001', '000002']
    person = videos[0].people_in(videos[0].images[1])[0]
    assert videos[0].version == 2021 and person.person_id == 1000
    assert person.occluded[5] and person.annotated[5] and not person.visible[5]
    assert person.occluded.sum() == 1


def test_keypoints_reordered_by_category_names(tmp_path):
    video = make_video()
    names = video['categories'][0]['keypoints']
    order = list(range(17))
    order[5], order[6] = 6, 5  # file lists right_shoulder before left_shoulder
    video['categories'][0]['keypoints'] = [names[i] for i in order]
    kps = np.asarray(video['annotations'][0]['keypoints']).reshape(17, 3)
    video['annotations'][0]['keypoints'] = kps[order].ravel().tolist()
    (tmp_path / 'v.json').write_text(json.dumps(video))
    person = read_posetrack(tmp_path / 'v.json')[0].people[video['annotations'][0]['image_id']][0]
    np.testing.assert_allclose(person.keypoints, kps)


@pytest.mark.parametrize('target, expected', [
    ('center', {0: [0, 0, 0, 1, 2], 3: [1, 2, 3, 4, 5], 5: [3, 4, 5, 5, 5]}),
    ('last', {0: [0, 0, 0, 0, 0], 3: [0, 0, 1, 2, 3], 5: [1, 2, 3, 4, 5]}),
])
def test_window_indices_repeat_edges(tmp_path, target, expected):
    video = read_posetrack(write_dataset(tmp_path, [make_video()], write_frames=False))[0]
    for index, indices in expected.items():
        assert video.window_indices(index, 5, target) == indices
    assert video.window_indices(2, 1, target) == [2]


def _write(tmp_path, content) -> str:
    path = tmp_path / 'bad.json'
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _mutated(mutate):
    video = make_video()
    mutate(video)
    return video


@pytest.mark.parametrize('content, message', [
    ('{"images": [', 'not valid JSON'),
    ('[1, 2]', 'JSON object at the top level'),
    ({'annotations': []}, "missing field 'images'"),
    ({'annolist': []}, 'PoseTrack2017'),
    (_mutated(lambda v: v['images'][1].pop('file_name')), "images[1]: missing field 'file_name'"),
    (_mutated(lambda v: v['annotations'][0].pop('keypoints')), "annotations[0]: missing field 'keypoints'"),
    (_mutated(lambda v: v['annotations'][0].__setitem__('keypoints', [1, 2, 3])), "field 'keypoints' must be"),
    (_mutated(lambda v: v['annotations'][0].__setitem__('bbox', [1, 2, 'x', 4])), "field 'bbox' must be"),
    (_mutated(lambda v: v['annotations'][1].__setitem__('image_id', 5)), 'image_id 5 is not in images'),
    (_mutated(lambda v: v['annotations'][0].__setitem__('track_id', 1.5)), "field 'track_id' must be an integer"),
    (_mutated(lambda v: v['images'][0].__setitem__('nframes', 9)), "'nframes' says [6, 9]"),
    (_mutated(lambda v: v['images'][0].__setitem__('ignore_regions_x', [[1, 2]])), 'ignore_regions'),
    (_mutated(lambda v: v['categories'][0]['keypoints'].__setitem__(0, 'snout')), "keypoint 'nose' is missing"),
])
def test_malformed_files_name_file_and_field(tmp_path, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(PoseTrackFormatError) as error:
        read_posetrack(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_missing_inputs_raise(tmp_path):
    with pytest.raises(PoseTrackFormatError, match='no such annotation'):
        read_posetrack(tmp_path / 'absent.json')
    with pytest.raises(PoseTrackFormatError, match='no \\*.json'):
        read_posetrack(tmp_path)


def test_missing_frame_file_is_named(tmp_path):
    ann_dir = write_dataset(tmp_path, [make_video()])
    (tmp_path / 'images/val/000001_fixture/000004.png').unlink()
    with pytest.raises(FileNotFoundError, match='000004.png'):
        check_frames_exist(read_posetrack(ann_dir), tmp_path)


def test_reads_synthetic_generator_output(tmp_path):
    from starpose_training.dataset import PoseTrackWindows
    from starpose_training.metrics.poseval import evaluate_posetrack_ap
    from starpose_training.synthetic import generate_dataset

    generate_dataset(tmp_path, 'small', seed=3)
    per_video = read_posetrack(tmp_path / 'annotations/val')
    merged = read_posetrack(tmp_path / 'annotations/val.json')
    assert len(per_video) == len(merged) >= 1
    assert [len(v.images) for v in per_video] == [len(v.images) for v in merged]
    check_frames_exist(per_video, tmp_path)
    people = [p for v in per_video for ps in v.people.values() for p in ps]
    assert people and all(not p.annotated[[3, 4]].any() for p in people)
    assert all(p.bbox_xywh is not None and p.bbox_head_xywh is not None for p in people)
    windows = PoseTrackWindows(per_video, tmp_path, window=5, target_frame='center', scale=4)
    assert len(windows) > 0 and windows[0]['lr_frames'].shape == (5, 3, 64, 48)
    assert evaluate_posetrack_ap(list(zip(per_video, merged, strict=True))).parts['Total'] == 100.0


def test_prediction_files_without_is_labeled(tmp_path):
    video = make_video()
    for image in video['images']:
        del image['is_labeled'], image['nframes'], image['vid_id']
    (tmp_path / 'pred.json').write_text(json.dumps(video))
    images = read_posetrack(tmp_path / 'pred.json')[0].images
    assert [im.is_labeled for im in images] == [False, True, True, True, False, False]
