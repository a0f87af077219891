"""starpose-video2bag: image folders and video files become rosbag2 files the node and bag-eval read."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from starpose_ros.bag_tools import bagio
from starpose_ros.bag_tools.video2bag import DEFAULT_START_NS, Video2BagError, convert, main
from starpose_ros.core.messages import tracked_detections
from starpose_ros.core.person_filter import ANY_CLASS


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    """A 4-frame synthetic PoseTrack clip: its image folder and annotation JSON."""
    from starpose_training.synthetic.dataset import generate_dataset

    root = tmp_path_factory.mktemp('clip')
    manifest = generate_dataset(root, 'small', 5, frames=4, videos={'val': 1})
    sequence = manifest['splits']['val'][0]
    return root / 'images' / 'val' / sequence, root / 'annotations' / 'val' / f'{sequence}.json'


def test_image_folder_with_posetrack_boxes(clip, tmp_path):
    from starpose_training.posetrack import read_posetrack_file

    folder, annotations = clip
    summary = convert(folder, tmp_path / 'bag', annotations, fps=10.0)
    assert summary['frames'] == 4 and summary['topics'] == ['/image', '/detections']
    images = list(bagio.read_messages(tmp_path / 'bag', ['/image']))
    detections = list(bagio.read_messages(tmp_path / 'bag', ['/detections']))
    assert [bagio.header_stamp_ns(i.msg) for i in images] == [DEFAULT_START_NS + k * 100_000_000 for k in range(4)]
    def header(msg):
        return bagio.header_stamp_ns(msg), msg.header.frame_id
    assert [header(d.msg) for d in detections] == [header(i.msg) for i in images]
    first = cv2.cvtColor(cv2.imread(str(sorted(folder.glob('*.jpg'))[0])), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(bagio.decode_image(images[0].msg), first)
    video = read_posetrack_file(annotations)[0]
    for image, message in zip(video.images, detections, strict=True):
        people = [p for p in video.people_in(image) if p.bbox_xywh is not None]
        got = tracked_detections(message.msg, ANY_CLASS)[0]
        assert [d.track_id for d in got] == [str(p.track_id) for p in people]
        np.testing.assert_allclose([d.box_xywh for d in got], [p.bbox_xywh for p in people], atol=1e-6)


def test_video_file_to_compressed_mcap(tmp_path):
    path = tmp_path / 'clip.mp4'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 12.0, (64, 48))
    for k in range(5):
        writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    writer.release()
    assert main([str(path), str(tmp_path / 'bag'), '--storage', 'mcap', '--image-format', 'jpeg']) == 0
    assert bagio.bag_topics(tmp_path / 'bag') == {'/image/compressed': bagio.COMPRESSED_IMAGE}
    frames = list(bagio.read_messages(tmp_path / 'bag', ['/image/compressed']))
    assert len(frames) == 5 and frames[0].msg.format == 'jpeg'
    stamps = [bagio.header_stamp_ns(f.msg) for f in frames]
    assert np.diff(stamps).tolist() == [round(1e9 / 12.0)] * 4  # the video's own frame rate
    assert abs(int(bagio.decode_image(frames[3].msg).mean()) - 120) <= 3


def test_bad_inputs_are_named(clip, tmp_path):
    folder, annotations = clip
    with pytest.raises(Video2BagError, match='input not found'):
        convert(tmp_path / 'missing.mp4', tmp_path / 'bag')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(Video2BagError, match='no images'):
        convert(tmp_path / 'empty', tmp_path / 'bag')
    (tmp_path / 'exists').mkdir()
    with pytest.raises(Video2BagError, match='exists already'):
        convert(folder, tmp_path / 'exists')
    three = tmp_path / 'three'
    three.mkdir()
    for image in sorted(folder.glob('*.jpg'))[:3]:
        (three / image.name).write_bytes(image.read_bytes())
    with pytest.raises(Video2BagError, match='has 4 frames but .* has 3'):
        convert(three, tmp_path / 'short_bag', annotations)


def _video(path, frames: int):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10.0, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))  # noise: every frame is large
    writer.release()
    return path


def test_a_truncated_video_is_converted_with_a_warning(tmp_path, caplog):
    whole = _video(tmp_path / 'whole.avi', 40)  # AVI: the frame count is in the header, before the frames
    cut = tmp_path / 'cut.avi'
    data = whole.read_bytes()
    cut.write_bytes(data[:len(data) // 3])
    capture = cv2.VideoCapture(str(cut))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    capture.release()
    summary = convert(cut, tmp_path / 'bag')
    assert 0 < summary['frames'] < 40
    assert f"read {summary['frames']} of the 40 frames its container claims" in caplog.text
    caplog.clear()
    convert(whole, tmp_path / 'whole_bag')
    assert 'claims' not in caplog.text


def test_a_corrupt_image_leaves_no_partial_bag(clip, tmp_path, capsys):
    folder, _annotations = clip
    broken = tmp_path / 'broken'
    broken.mkdir()
    for index, image in enumerate(sorted(folder.glob('*.jpg'))):
        (broken / image.name).write_bytes(b'not a jpeg' if index == 2 else image.read_bytes())
    assert main([str(broken), str(tmp_path / 'bag')]) == 1
    err = capsys.readouterr().err
    assert 'OpenCV cannot read this image' in err and 'removed' in err and err.count('\n') == 1
    assert not (tmp_path / 'bag').exists()  # the next run is not told "exists already"
    (broken / sorted(folder.glob('*.jpg'))[2].name).write_bytes(sorted(folder.glob('*.jpg'))[2].read_bytes())
    assert main([str(broken), str(tmp_path / 'bag')]) == 0


def test_an_output_that_cannot_be_created_is_one_line_before_any_frame(clip, tmp_path, capsys, monkeypatch):
    from starpose_ros.bag_tools import cli

    folder, _annotations = clip
    (tmp_path / 'notes.txt').write_text('mine')
    assert main([str(folder), str(tmp_path / 'notes.txt' / 'bag')]) == 1
    assert 'notes.txt is a file, not a folder' in capsys.readouterr().err
    locked = tmp_path / 'locked'
    locked.mkdir(mode=0o555)
    # root may write anywhere, so the permission answer is taken from os.access, as a user would get it
    monkeypatch.setattr(cli.os, 'access', lambda path, mode: Path(path) != locked)
    assert main([str(folder), str(locked / 'bag')]) == 1
    err = capsys.readouterr().err
    assert 'is not writable' in err and err.count('\n') == 1 and not (locked / 'bag').exists()


def test_impossible_numbers_are_argparse_errors(clip, tmp_path, capsys):
    folder, _annotations = clip
    for flag in ('--max-frames=0', '--downscale=-2', '--fps=nan'):
        with pytest.raises(SystemExit) as stopped:
            main([str(folder), str(tmp_path / 'bag'), flag])
        assert stopped.value.code == 2
    assert not (tmp_path / 'bag').exists()
