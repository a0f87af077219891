"""Synthetic PoseTrack18 videos: structure, joints on drawn limbs, determinism, rosbag output, CLI."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from starpose_model.keypoints import POSETRACK_KEYPOINT_NAMES, POSETRACK_UNANNOTATED
from starpose_training.synthetic import ClipRenderer, JointStatus, generate_dataset, make_config
from starpose_training.synthetic.cli import main as synth_main
from starpose_training.synthetic.dataset import clip_seed, is_annotated
from starpose_training.synthetic.render import OBJECT_LABEL, label_person

IMAGE_FIELDS = {'id', 'file_name', 'vid_id', 'frame_id', 'nframes', 'is_labeled', 'ignore_regions_x',
                'ignore_regions_y'}
ANNOTATION_FIELDS = {'id', 'image_id', 'category_id', 'track_id', 'keypoints', 'bbox', 'bbox_head'}


@pytest.fixture(scope='module')
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp('synth') / 'data'
    manifest = generate_dataset(out, 'small', seed=0, distractors=(1, 1))
    return out, manifest


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_layout_and_posetrack18_fields(small_dataset):
    out, manifest = small_dataset
    config = make_config('small')
    assert manifest['splits'] == {'train': ['000001_synth'], 'val': ['000002_synth']}
    assert manifest['frames'] == 2 * config.frames and manifest['annotations'] > 0
    for split, sequences in manifest['splits'].items():
        merged = _load(out / 'annotations' / f'{split}.json')
        per_video = [_load(out / 'annotations' / split / f'{seq}.json') for seq in sequences]
        assert merged['images'] == [i for v in per_video for i in v['images']]
        assert merged['annotations'] == [a for v in per_video for a in v['annotations']]
        category, = merged['categories']
        assert category['id'] == 1 and category['keypoints'] == list(POSETRACK_KEYPOINT_NAMES)
        assert all(1 <= a <= 17 and 1 <= b <= 17 for a, b in category['skeleton'])
        image_ids = set()
        for video, seq in zip(per_video, sequences, strict=True):
            images = video['images']
            assert [i['file_name'] for i in images] == [f'images/{split}/{seq}/{k:06d}.jpg' for k in range(len(images))]
            assert len(images) == config.frames
            for k, image in enumerate(images):
                assert IMAGE_FIELDS <= set(image)
                assert image['nframes'] == config.frames and image['is_labeled'] is True
                assert image['vid_id'] == seq[:6] and image['frame_id'] == image['id'] == images[0]['id'] + k
                assert len(image['ignore_regions_x']) == len(image['ignore_regions_y'])
                frame = cv2.imread(str(out / image['file_name']))
                assert frame.shape == (config.height, config.width, 3)
                image_ids.add(image['id'])
            for ann in video['annotations']:
                assert ANNOTATION_FIELDS <= set(ann) and ann['image_id'] in image_ids and ann['category_id'] == 1
                keypoints = np.asarray(ann['keypoints'], dtype=float).reshape(17, 3)
                assert set(keypoints[:, 2]) <= {0.0, 1.0}
                assert (keypoints[list(POSETRACK_UNANNOTATED)] == 0).all()  # ears never annotated
                visible = keypoints[keypoints[:, 2] == 1, :2]
                assert ((visible >= -0.5) & (visible < [config.width - 0.5, config.height - 0.5])).all()
                x, y, w, h = ann['bbox']
                assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= config.width + 0.01
                assert (visible >= [x - 0.01, y - 0.01]).all() and (visible <= [x + w + 0.01, y + h + 0.01]).all()
                assert ann['bbox_head'][2] > 0 and ann['bbox_head'][3] > 0
    assert any(i['ignore_regions_x'] for i in _load(out / 'annotations' / 'val.json')['images']), \
        'the distractor should appear as an ignore region'


def test_training_reader_loads_the_dataset(small_dataset):
    from starpose_training.posetrack import check_frames_exist, read_posetrack

    out, manifest = small_dataset
    for split in ('train', 'val'):
        from_dir = read_posetrack(out / 'annotations' / split)
        from_merged = read_posetrack(out / 'annotations' / f'{split}.json')
        check_frames_exist(from_dir, out)
        assert [v.name for v in from_dir] == manifest['splits'][split]
        assert [v.images[0].vid_id for v in from_merged] == [seq[:6] for seq in manifest['splits'][split]]
        assert [len(v.images) for v in from_merged] == [len(v.images) for v in from_dir]
        raw = _load(out / 'annotations' / f'{split}.json')['annotations']
        people = [p for v in from_merged for ps in v.people.values() for p in ps]
        assert len(people) == len(raw)
        for person, ann in zip(sorted(people, key=lambda p: p.id), sorted(raw, key=lambda a: a['id']), strict=True):
            flags = np.asarray(ann['keypoints']).reshape(17, 3)
            assert person.track_id == ann['track_id']
            np.testing.assert_array_equal(person.visible, flags[:, 2] == 1)
            np.testing.assert_array_equal(person.occluded, (flags[:, 2] == 0) & (flags[:, :2] != 0).any(1))


def _crowded_renderer(seed):
    config = make_config('small', frames=12, people=(5, 5), occluders=(3, 3), person_height=(60.0, 120.0),
                         motion_weights={'walk': 1.0})
    return ClipRenderer(config, seed)


def test_joints_lie_on_the_persons_drawn_parts_and_occlusion_is_flagged():
    occluded_seen = visible_seen = 0
    for seed in (1, 2):
        renderer = _crowded_renderer(seed)
        for frame in range(0, 12, 3):
            clean = renderer.render(frame, clean=True)
            degraded = renderer.render(frame)
            owner = label_person(clean.labels)
            for person, same in zip(clean.people, degraded.people, strict=True):
                np.testing.assert_array_equal(person.status, same.status)  # degradation moves nothing
                palette = np.asarray(person.palette)
                for joint, ((x, y), status) in enumerate(zip(person.joints, person.status, strict=True)):
                    col, row = int(round(x)), int(round(y))
                    if status == JointStatus.VISIBLE:
                        colour = clean.image[row, col]
                        assert (palette == colour).all(1).any(), \
                            f'seed {seed} frame {frame} person {person.track_id} joint {joint}: colour {colour} ' \
                            f'is none of the person\'s part colours'
                        assert owner[row, col] == person.person_index
                        visible_seen += 1
                    elif status == JointStatus.OCCLUDED:
                        label = clean.labels[row, col]
                        assert owner[row, col] != person.person_index
                        assert label == OBJECT_LABEL or owner[row, col] >= 0, 'occluded by nothing'
                        occluded_seen += 1
                    elif status == JointStatus.OUTSIDE:
                        assert not (0 <= col < clean.image.shape[1] and 0 <= row < clean.image.shape[0])
    assert visible_seen > 100 and occluded_seen > 0


def test_occluded_joints_are_written_with_flag_zero(tmp_path):
    overrides = dict(frames=6, people=(5, 5), occluders=(3, 3), person_height=(60.0, 120.0),
                     motion_weights={'walk': 1.0}, videos={'val': 1})
    generate_dataset(tmp_path, 'small', seed=1, **overrides)
    renderer = ClipRenderer(make_config('small', **overrides), clip_seed(1, 1))
    annotations = _load(tmp_path / 'annotations' / 'val.json')['annotations']
    by_key = {(a['image_id'] % 10_000, a['track_id']): np.asarray(a['keypoints']).reshape(17, 3) for a in annotations}
    checked = 0
    for frame in range(6):
        for person in renderer.render(frame).people:
            if not is_annotated(person, renderer.config):
                assert (frame, person.track_id) not in by_key
                continue
            keypoints = by_key[(frame, person.track_id)]
            hidden = np.isin(person.status, (JointStatus.OCCLUDED, JointStatus.SELF_OCCLUDED))
            assert (keypoints[hidden, 2] == 0).all() and (keypoints[hidden, :2] != 0).any(1).all()
            assert (keypoints[person.status == JointStatus.VISIBLE, 2] == 1).all()
            np.testing.assert_allclose(keypoints[hidden | (person.status == JointStatus.VISIBLE), :2],
                                       person.joints[hidden | (person.status == JointStatus.VISIBLE)], atol=0.006)
            checked += int(hidden.sum())
    assert checked > 0


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob(pattern))}


def test_same_seed_is_byte_identical_and_other_seeds_differ(tmp_path):
    for name, seed in (('a', 7), ('b', 7), ('c', 8)):
        generate_dataset(tmp_path / name, 'small', seed=seed, frames=3)
    a, b, c = (_files(tmp_path / n, '*.json') for n in 'abc')
    assert a == b
    assert _files(tmp_path / 'a', '*.jpg') == _files(tmp_path / 'b', '*.jpg')
    assert a.keys() == c.keys()
    assert a['annotations/val.json'] != c['annotations/val.json']
    assert _files(tmp_path / 'a', '*.jpg') != _files(tmp_path / 'c', '*.jpg')


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match='unknown preset'):
        make_config('huge')
    with pytest.raises(ValueError, match='persn_height'):
        make_config('small', persn_height=(1, 2))
    with pytest.raises(ValueError, match='person_height'):
        make_config('small', person_height=(90.0, 40.0))
    with pytest.raises(ValueError, match='unknown difficulty'):
        make_config('small', 'extreme')
    generate_dataset(tmp_path, 'small', frames=1)
    with pytest.raises(FileExistsError, match='already holds a dataset'):
        generate_dataset(tmp_path, 'small', frames=1)
    (tmp_path / 'keep.txt').write_text('user file')
    generate_dataset(tmp_path, 'small', frames=2, overwrite=True)
    assert (tmp_path / 'keep.txt').read_text() == 'user file'
    assert len(list((tmp_path / 'images' / 'val').rglob('*.jpg'))) == 2
    real = tmp_path / 'posetrack'  # a real dataset (no manifest of ours): --overwrite must not touch it
    (real / 'annotations' / 'val').mkdir(parents=True)
    (real / 'annotations' / 'val' / 'seq.json').write_text('{}')
    with pytest.raises(FileExistsError, match='not a starpose-synth output'):
        generate_dataset(real, 'small', frames=1, overwrite=True)
    assert (real / 'annotations' / 'val' / 'seq.json').read_text() == '{}'


@pytest.mark.parametrize('storage, image_format', [('sqlite3', 'rgb8'), ('mcap', 'jpeg')])
def test_a_clip_becomes_a_rosbag_through_the_bag_tools(tmp_path, storage, image_format):
    from starpose_ros.bag_tools.bagio import bag_topics, decode_image, header_stamp_ns, read_messages
    from starpose_ros.bag_tools.video2bag import convert
    from starpose_ros.core.messages import tracked_detections
    from starpose_ros.core.person_filter import ANY_CLASS

    bag = tmp_path / 'bag'
    manifest = generate_dataset(tmp_path / 'data', 'small', seed=4, frames=5)
    sequence = manifest['splits']['val'][0]
    annotations = tmp_path / 'data' / 'annotations' / 'val' / f'{sequence}.json'
    frames = sorted((tmp_path / 'data' / 'images' / 'val' / sequence).glob('*.jpg'))
    convert(frames[0].parent, bag, annotations, fps=manifest['config']['fps'], storage=storage,
            image_format=image_format, frame_id='synth_cam')
    image_topic = '/image' if image_format == 'rgb8' else '/image/compressed'
    assert bag_topics(bag) == {
        image_topic: 'sensor_msgs/msg/Image' if image_format == 'rgb8' else 'sensor_msgs/msg/CompressedImage',
        '/detections': 'starpose_msgs/msg/TrackedDetectionArray'}
    assert (bag / 'metadata.yaml').read_text().count(storage) >= 1
    video = _load(annotations)
    images, detections = [], []
    for item in read_messages(bag, [image_topic, '/detections']):
        assert item.msg.header.frame_id == 'synth_cam' and item.timestamp_ns == header_stamp_ns(item.msg)
        (images if item.topic == image_topic else detections).append(item.msg)
    assert len(images) == len(detections) == 5
    for frame, (image_msg, det_msg) in enumerate(zip(images, detections, strict=True)):
        assert header_stamp_ns(image_msg) == header_stamp_ns(det_msg)
        written = cv2.cvtColor(cv2.imread(str(frames[frame])), cv2.COLOR_BGR2RGB)
        decoded = decode_image(image_msg)
        if image_format == 'rgb8':
            np.testing.assert_array_equal(decoded, written)
        else:
            assert np.abs(decoded.astype(int) - written).mean() < 4
        image_id = video['images'][frame]['id']
        expected = {str(a['track_id']): a['bbox'] for a in video['annotations'] if a['image_id'] == image_id}
        got = {d.track_id: d.box_xywh for d in tracked_detections(det_msg, ANY_CLASS)[0]}
        assert got.keys() == expected.keys() and len(got) > 0
        for track, box in got.items():
            np.testing.assert_allclose(box, expected[track], atol=1e-6)
    stamps = [header_stamp_ns(m) for m in images]
    assert stamps == sorted(stamps) and stamps[1] - stamps[0] == round(1e9 / 25.0)


def test_cli_generate_and_preview(tmp_path, capsys):
    out = tmp_path / 'data'
    assert synth_main(['generate', str(out), '--preset', 'small', '--frames', '3', '--videos', 'val=2',
                       '--set', 'person_height=[40, 90]', '--quiet']) == 0
    assert 'frames/s' in capsys.readouterr().out
    manifest = _load(out / 'synth_manifest.json')
    assert manifest['config']['person_height'] == [40, 90] and manifest['splits'] == {
        'val': ['000001_synth', '000002_synth']}
    sheet, gif = tmp_path / 'sheet.png', tmp_path / 'anim.gif'
    assert synth_main(['preview', str(out), '--sequence', '000002_synth', '--frames', '3', '--columns', '3',
                       '--out', str(sheet), '--gif', str(gif), '--gif-frames', '3', '--scale', '2']) == 0
    picture = cv2.imread(str(sheet))
    assert picture.shape[0] == 2 * 240 and picture.shape[1] >= 3 * 2 * 320
    assert gif.read_bytes()[:6] in (b'GIF87a', b'GIF89a')
    assert synth_main(['generate', str(out), '--preset', 'small', '--quiet']) == 2  # exists: clear error, no crash
    assert 'already holds a dataset' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        synth_main(['generate', str(tmp_path / 'x'), '--set', 'no_such_field=1'])


def test_training_windows_load_synthetic_samples(small_dataset):
    from starpose_training.dataset import PoseTrackWindows

    out, manifest = small_dataset
    windows = PoseTrackWindows(out / 'annotations' / 'train', out, window=5, target_frame='center', scale=4)
    assert len(windows) > 0
    sample = windows[len(windows) // 2]
    assert tuple(sample['lr_frames'].shape) == (5, 3, 64, 48)
    assert tuple(sample['hr_image'].shape) == (3, 256, 192)
    assert float(sample['target_weight'].sum()) > 0


def test_unlabeled_frames_carry_no_people(tmp_path):
    generate_dataset(tmp_path, 'small', seed=2, frames=6, labeled_every=3, videos={'train': 1})
    video = _load(tmp_path / 'annotations' / 'train.json')
    labeled = [i['id'] for i in video['images'] if i['is_labeled']]
    assert [i['is_labeled'] for i in video['images']] == [True, False, False, True, False, False]
    assert video['annotations'] and {a['image_id'] for a in video['annotations']} <= set(labeled)


def test_difficulty_changes_image_quality_not_geometry():
    def degradation(difficulty):
        """Fine-grained (noise, blur, anti-aliasing) change of the image, lighting drift removed."""
        renderer = ClipRenderer(make_config('small', difficulty, frames=2), seed=5)
        clean, degraded = renderer.render(1, clean=True), renderer.render(1)
        residual = degraded.image.astype(np.float32) - clean.image
        return renderer, float(np.std(residual - cv2.GaussianBlur(residual, (0, 0), 3)))

    (easy, easy_error), (hard, hard_error) = degradation('easy'), degradation('hard')
    assert hard.config.noise_sigma[0] > easy.config.noise_sigma[1] and hard.config.occluders[0] >= 2
    assert hard_error > 3 * easy_error
    # The same seed gives the same people and motion at any difficulty (only the scene's extras differ).
    np.testing.assert_array_equal(easy.people[0].height_px, hard.people[0].height_px)


def test_cli_an_output_that_cannot_be_written_is_one_line(tmp_path, capsys):
    (tmp_path / 'notes.txt').write_text('mine')
    assert synth_main(['generate', str(tmp_path / 'notes.txt' / 'data'), '--preset', 'small', '--frames', '2',
                       '--quiet']) == 1
    err = capsys.readouterr().err
    assert err.startswith('starpose-synth: error: cannot write') and err.count('\n') == 1
    assert (tmp_path / 'notes.txt').read_text() == 'mine'
