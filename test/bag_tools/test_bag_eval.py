"""starpose-bag-eval on real rosbag2 files (sqlite3, mcap, a bare .mcap from another writer).

Bags are written with `rosbags` (through the synthetic generator and bagio) and with
mcap-ros2-support's writer; the evaluation runs a real ONNX Runtime session of a random tiny
model; the output bag is read back with rosbags. Results are compared, frame for frame, with
the node's core (`PosePipeline.process`) run directly on the same frames.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from starpose_ros.bag_tools import bagio
from starpose_ros.bag_tools.bag_eval import EvalOptions, build_parser, evaluate_bag, main, run_demo
from starpose_ros.bag_tools.bag_source import BagEvalError, eval_typestore
from starpose_ros.bag_tools.replay_outputs import OVERLAY_TOPIC, POSES_TOPIC
from starpose_ros.bag_tools.video2bag import convert
from starpose_ros.core.backends import create_backend
from starpose_ros.core.messages import tracked_detections
from starpose_ros.core.person_filter import ANY_CLASS
from starpose_ros.core.pipeline import PipelineConfig, PosePipeline
from starpose_ros.core.types import FrameInput
from starpose_testing.paths import REPO_ROOT

FRAMES = 4


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    """One synthetic clip written as a sqlite3 and as an mcap rosbag2, with its PoseTrack JSON."""
    from starpose_training.synthetic.dataset import generate_dataset

    root = tmp_path_factory.mktemp('clips')
    bags = {}
    for storage in ('sqlite3', 'mcap'):
        manifest = generate_dataset(root / f'data_{storage}', 'small', 3, frames=FRAMES, videos={'val': 1},
                                    people=(1, 2))
        sequence = manifest['splits']['val'][0]
        convert(root / f'data_{storage}' / 'images' / 'val' / sequence, root / f'bag_{storage}',
                root / f'data_{storage}' / 'annotations' / 'val' / f'{sequence}.json', fps=manifest['config']['fps'],
                storage=storage)
        bags[storage] = root / f'bag_{storage}'
    return {'bags': bags, 'gt': root / 'data_mcap' / 'annotations' / 'val' / f'{sequence}.json'}


@pytest.fixture
def onnx_model(tiny_model_files):
    return tiny_model_files[0]


def _options(bag, model, output, **overrides) -> EvalOptions:
    return EvalOptions(bag=Path(bag), model=Path(model), output=Path(output), progress=False,
                       pipeline=PipelineConfig(max_batch=8), **overrides)


def _read(bag, topic):
    return [item for item in bagio.read_messages(bag, [topic], typestore=eval_typestore())]


def _direct_pipeline_results(bag, model):
    """The node's core on the bag's frames, called directly (no bag tool involved)."""
    images = _read(bag, '/image')
    detections = {bagio.header_stamp_ns(d.msg): tracked_detections(d.msg, ANY_CLASS)[0]
                  for d in _read(bag, '/detections')}
    with create_backend('onnxruntime', model, intra_op_threads=2) as backend:
        pipeline = PosePipeline(backend, PipelineConfig(max_batch=8))
        results = []
        for item in images:
            stamp = bagio.header_stamp_ns(item.msg)
            result = pipeline.process(FrameInput(stamp, item.msg.header.frame_id, bagio.decode_image(item.msg),
                                                 detections[stamp]))
            results.append(result)
    return images, results


def _keypoints(pose_array) -> np.ndarray:
    return np.array([[[k.x, k.y, k.score] for k in pose.keypoints] for pose in pose_array.poses],
                    dtype=np.float32).reshape(-1, 17, 3)


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_one_pose_array_per_image_with_the_image_header(clips, onnx_model, tmp_path, storage):
    bag = clips['bags'][storage]
    report = evaluate_bag(_options(bag, onnx_model, tmp_path, gt_json=clips['gt'], bag_images=True))
    images = _read(bag, '/image')
    poses = _read(tmp_path / 'output_bag', POSES_TOPIC)
    assert len(poses) == len(images) == FRAMES
    for image, pose in zip(images, poses, strict=True):
        assert (pose.msg.header.stamp.sec, pose.msg.header.stamp.nanosec, pose.msg.header.frame_id) == \
            (image.msg.header.stamp.sec, image.msg.header.stamp.nanosec, image.msg.header.frame_id)
        assert pose.timestamp_ns == image.timestamp_ns  # bag time like the input's too
        assert pose.msg.keypoint_layout == 'posetrack'
    assert len(_read(tmp_path / 'output_bag', OVERLAY_TOPIC)) == FRAMES
    assert len(_read(tmp_path / 'output_bag', '/sr_mosaic')) == FRAMES
    lines = (tmp_path / 'frames.jsonl').read_text().splitlines()
    assert [json.loads(line)['stamp_ns'] for line in lines] == [bagio.header_stamp_ns(i.msg) for i in images]
    video = cv2.VideoCapture(str(tmp_path / 'overlay.mp4'))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    video.release()
    saved = json.loads((tmp_path / 'report.json').read_text())
    assert saved['counts']['frames'] == FRAMES and saved['counts']['persons'] == report['counts']['persons'] > 0
    assert {'read', 'crop', 'infer', 'total'} <= set(saved['latency_ms'])
    assert all(set(s) == {'p50', 'p95', 'max', 'mean'} for s in saved['latency_ms'].values())
    assert {'OKS mAP', 'PoseTrack AP Total', 'PSNR (dB)', 'SSIM'} <= set(saved['accuracy'])
    for plot in ('latency.png', 'joint_ap.png', 'filmstrip.png'):
        assert cv2.imread(str(tmp_path / 'plots' / plot)) is not None
    markdown = (tmp_path / 'report.md').read_text()
    assert '](plots/latency.png)' in markdown and '| infer |' in markdown


def test_a_centre_target_model_answers_every_image_with_its_own_header(clips, tiny_center_checkpoint,
                                                                         tmp_path):
    bag = clips['bags']['mcap']
    report = evaluate_bag(_options(bag, tiny_center_checkpoint, tmp_path, backend='torch', video=False))
    assert report['run']['target_frame'] == 'center'
    poses = _read(tmp_path / 'output_bag', POSES_TOPIC)
    images = _read(bag, '/image')
    assert [bagio.header_stamp_ns(p.msg) for p in poses] == [bagio.header_stamp_ns(i.msg) for i in images]
    assert [p.timestamp_ns for p in poses] == [i.timestamp_ns for i in images]


def test_results_match_the_node_core_frame_for_frame(clips, onnx_model, tmp_path):
    bag = clips['bags']['sqlite3']
    evaluate_bag(_options(bag, onnx_model, tmp_path))
    poses = _read(tmp_path / 'output_bag', POSES_TOPIC)
    _images, results = _direct_pipeline_results(bag, onnx_model)
    assert len(poses) == len(results)
    for pose, result in zip(poses, results, strict=True):
        assert bagio.header_stamp_ns(pose.msg) == result.stamp_ns
        assert [p.track_id for p in pose.msg.poses] == [p.track_id for p in result.persons]
        expected = np.array([p.keypoints for p in result.persons], dtype=np.float32).reshape(-1, 17, 3)
        np.testing.assert_array_equal(_keypoints(pose.msg), expected)


def test_storage_formats_and_detection_sources_agree(clips, onnx_model, tmp_path):
    outputs = {}
    for name, bag, extra in (('sqlite3', clips['bags']['sqlite3'], {}), ('mcap', clips['bags']['mcap'], {}),
                             ('gt boxes', clips['bags']['mcap'], {'detector': 'gt', 'gt_json': clips['gt']})):
        evaluate_bag(_options(bag, onnx_model, tmp_path / name, **extra))
        outputs[name] = [_keypoints(p.msg) for p in _read(tmp_path / name / 'output_bag', POSES_TOPIC)]
    for name in ('mcap', 'gt boxes'):
        for a, b in zip(outputs['sqlite3'], outputs[name], strict=True):
            np.testing.assert_array_equal(a, b)


def _write_foreign_mcap(source_bag, path):
    """A bare .mcap written by mcap-ros2-support (schemas from the .msg texts), same frames as `source_bag`."""
    from mcap_ros2.writer import Writer

    msg_dir = bagio.find_msg_dir()
    detection = (msg_dir / 'TrackedDetection.msg').read_text()
    detection_array = (msg_dir / 'TrackedDetectionArray.msg').read_text().replace(
        'TrackedDetection[]', 'starpose_msgs/TrackedDetection[]')
    image_schema = ('std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n'
                    'uint32 step\nuint8[] data\n' + '=' * 80 + '\nMSG: std_msgs/Header\n'
                    'builtin_interfaces/Time stamp\nstring frame_id\n' + '=' * 80 + '\nMSG: builtin_interfaces/Time\n'
                    'int32 sec\nuint32 nanosec\n')
    detections_schema = (detection_array + '=' * 80 + '\nMSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\n'
                         'string frame_id\n' + '=' * 80 + '\nMSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n'
                         + '=' * 80 + '\nMSG: starpose_msgs/TrackedDetection\n' + detection)
    with open(path, 'wb') as stream:
        writer = Writer(stream)
        image_id = writer.register_msgdef('sensor_msgs/msg/Image', image_schema)
        detections_id = writer.register_msgdef('starpose_msgs/msg/TrackedDetectionArray', detections_schema)
        items = _read(source_bag, '/image') + _read(source_bag, '/detections')
        for item in sorted(items, key=lambda i: (i.timestamp_ns, i.topic)):
            msg = item.msg
            header = {'stamp': {'sec': msg.header.stamp.sec, 'nanosec': msg.header.stamp.nanosec},
                      'frame_id': msg.header.frame_id}
            if item.topic == '/image':
                writer.write_message('/image', image_id, {
                    'header': header, 'height': msg.height, 'width': msg.width, 'encoding': msg.encoding,
                    'is_bigendian': msg.is_bigendian, 'step': msg.step, 'data': bytes(msg.data)},
                    log_time=item.timestamp_ns, publish_time=item.timestamp_ns)
            else:
                boxes = [{'id': d.id, 'class_id': d.class_id, 'score': d.score, 'center_x': d.center_x,
                          'center_y': d.center_y, 'size_x': d.size_x, 'size_y': d.size_y} for d in msg.detections]
                writer.write_message('/detections', detections_id, {'header': header, 'detections': boxes},
                                     log_time=item.timestamp_ns, publish_time=item.timestamp_ns)
        writer.finish()
    return path


def test_a_bare_mcap_from_another_writer_is_read(clips, onnx_model, tmp_path):
    foreign = _write_foreign_mcap(clips['bags']['sqlite3'], tmp_path / 'foreign.mcap')
    evaluate_bag(_options(foreign, onnx_model, tmp_path / 'foreign'))
    evaluate_bag(_options(clips['bags']['sqlite3'], onnx_model, tmp_path / 'reference'))
    got = _read(tmp_path / 'foreign' / 'output_bag', POSES_TOPIC)
    expected = _read(tmp_path / 'reference' / 'output_bag', POSES_TOPIC)
    assert len(got) == FRAMES
    for a, b in zip(got, expected, strict=True):
        assert bagio.header_stamp_ns(a.msg) == bagio.header_stamp_ns(b.msg)
        np.testing.assert_array_equal(_keypoints(a.msg), _keypoints(b.msg))


def test_vision_msgs_detections_are_decoded(clips, onnx_model, tmp_path):
    source = clips['bags']['sqlite3']
    typestore = eval_typestore()
    types = typestore.types
    with bagio.BagWriter(tmp_path / 'vision', storage='mcap', typestore=typestore) as bag:
        for item in _read(source, '/image'):
            bag.write('/camera/image', item.msg, item.timestamp_ns)
        for item in _read(source, '/detections'):
            detections = []
            for d in item.msg.detections:
                hypothesis = types['vision_msgs/msg/ObjectHypothesisWithPose'](
                    hypothesis=types['vision_msgs/msg/ObjectHypothesis'](class_id='person', score=d.score),
                    pose=types['geometry_msgs/msg/PoseWithCovariance'](
                        pose=types['geometry_msgs/msg/Pose'](
                            position=types['geometry_msgs/msg/Point'](x=0.0, y=0.0, z=0.0),
                            orientation=types['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0, z=0.0, w=1.0)),
                        covariance=np.zeros(36)))
                box = types['vision_msgs/msg/BoundingBox2D'](
                    center=types['vision_msgs/msg/Pose2D'](
                        position=types['vision_msgs/msg/Point2D'](x=d.center_x, y=d.center_y), theta=0.0),
                    size_x=d.size_x, size_y=d.size_y)
                detections.append(types['vision_msgs/msg/Detection2D'](header=item.msg.header, results=[hypothesis],
                                                                       bbox=box, id=d.id))
            bag.write('/people', types['vision_msgs/msg/Detection2DArray'](header=item.msg.header,
                                                                           detections=detections),
                      item.timestamp_ns)
    evaluate_bag(_options(tmp_path / 'vision', onnx_model, tmp_path / 'out_vision', image_topic='/camera/image',
                          detections_topic='/people'))
    evaluate_bag(_options(source, onnx_model, tmp_path / 'out_reference'))
    for a, b in zip(_read(tmp_path / 'out_vision' / 'output_bag', POSES_TOPIC),
                    _read(tmp_path / 'out_reference' / 'output_bag', POSES_TOPIC), strict=True):
        np.testing.assert_array_equal(_keypoints(a.msg), _keypoints(b.msg))


def test_missing_topic_and_wrong_type_are_named(clips, onnx_model, tmp_path):
    bag = clips['bags']['sqlite3']
    with pytest.raises(BagEvalError, match=r"no image topic '/camera'.*/detections \[starpose_msgs"):
        evaluate_bag(_options(bag, onnx_model, tmp_path, image_topic='/camera'))
    with pytest.raises(BagEvalError, match='image topic /detections carries starpose_msgs/msg/TrackedDetectionArray'):
        evaluate_bag(_options(bag, onnx_model, tmp_path, image_topic='/detections'))
    with pytest.raises(BagEvalError, match=r"no detections topic '/people'.*--detector hog"):
        evaluate_bag(_options(bag, onnx_model, tmp_path, detections_topic='/people'))
    with pytest.raises(BagEvalError, match='no metadata.yaml'):
        evaluate_bag(_options(tmp_path, onnx_model, tmp_path / 'out'))


def test_an_input_inside_the_outputs_it_replaces_is_refused(clips, onnx_model, tmp_path):
    first = tmp_path / 'run'
    evaluate_bag(_options(clips['bags']['mcap'], onnx_model, first, max_frames=2, video=False))
    with pytest.raises(BagEvalError, match="this run's own output"):
        evaluate_bag(_options(first / 'output_bag', onnx_model, first, video=False))
    assert (first / 'output_bag' / 'metadata.yaml').is_file()


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_replay_closes_its_outputs_and_reports(onnx_model, tmp_path, signum):
    bag = tmp_path / 'bag'  # 24 real frames, HOG at 8x upscale: seconds of replay to interrupt
    convert(REPO_ROOT / 'test' / 'fixtures' / 'vtest_x4' / 'images', bag, fps=10, storage='mcap')
    out = tmp_path / 'run'
    command = [sys.executable, '-m', 'starpose_ros.bag_tools.bag_eval', str(bag), '--model', str(onnx_model),
               '--output', str(out), '--detector', 'hog', '--hog-upscale', '8', '--quiet']
    # a shell's background job (CI) starts children with SIGINT ignored: give this one Ctrl-C back
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (out / 'frames.jsonl').is_file() or not (out / 'frames.jsonl').read_text():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1 and 'Traceback' not in stderr and 'interrupted after' in stderr, stderr
    report = json.loads((out / 'report.json').read_text())
    assert report['interrupted'] and 1 <= report['counts']['frames'] < 24
    assert (out / 'output_bag' / 'metadata.yaml').is_file()
    assert len(_read(out / 'output_bag', POSES_TOPIC)) >= 1


def test_a_replay_keeps_no_sr_crops_in_memory(clips, onnx_model, tmp_path, monkeypatch):
    """What accuracy needs per person is 17 keypoints; the SR crops (150 kB each) go to the outputs only."""
    from starpose_ros.bag_tools import bag_eval

    runs, make_run = [], bag_eval.ReplayRun
    monkeypatch.setattr(bag_eval, 'ReplayRun', lambda: runs.append(make_run()) or runs[-1])
    report = evaluate_bag(_options(clips['bags']['mcap'], onnx_model, tmp_path, gt_json=clips['gt'], video=False))
    (run,) = runs
    kept = [array for poses in run.poses.values() for _, array, _ in poses]
    assert len(kept) == report['counts']['persons'] > 0 and all(a.shape == (17, 3) for a in kept)
    assert not any(isinstance(v, np.ndarray) and v.size > 51 for v in vars(run).values())


def test_ground_truth_shorter_than_the_bag_is_refused_before_the_replay(clips, onnx_model, tmp_path):
    from starpose_training.posetrack import read_posetrack_file, write_posetrack_video

    (video,) = read_posetrack_file(clips['gt'])
    video.images = video.images[:2]
    short = write_posetrack_video(video, tmp_path / 'short.json')
    with pytest.raises(BagEvalError, match=r'has 2 frames, the bag 4 images.*--max-frames'):
        evaluate_bag(_options(clips['bags']['mcap'], onnx_model, tmp_path / 'out', gt_json=short, video=False))
    assert not (tmp_path / 'out' / 'output_bag').exists()  # nothing replayed
    report = evaluate_bag(_options(clips['bags']['mcap'], onnx_model, tmp_path / 'cut', gt_json=short, max_frames=2,
                                   video=False))
    assert 'OKS mAP' in report['accuracy']


@pytest.mark.parametrize('flag', ['--max-frames=-3', '--threads=-1', '--max-batch=0', '--max-tracks=x'])
def test_impossible_counts_are_one_line_errors(flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / 'bag'), '--output', str(tmp_path / 'out'), flag])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert 'must be >=' in err or 'not an integer' in err


@pytest.mark.parametrize('flags, reason', [
    (['--person-classes', ','], 'person classes are empty'), (['--min-detection-score', 'nan'], r'in \[0, 1\]'),
    (['--min-detection-score', '5'], r'in \[0, 1\]'), (['--track-max-age-s', '-1'], r'in \[0, 60\]'),
])
def test_filters_that_keep_nobody_are_refused(clips, tmp_path, capsys, flags, reason):
    try:
        code = main([str(clips['bags']['mcap']), '--output', str(tmp_path / 'out'), *flags])
    except SystemExit as argparse_exit:  # a value argparse's type refuses: usage line + error line
        code = argparse_exit.code
    err = capsys.readouterr().err
    assert code in (1, 2) and re.search(reason, err.splitlines()[-1]) and 'Traceback' not in err
    assert not (tmp_path / 'out').exists()


def test_replay_and_node_share_their_defaults():
    from starpose_ros.node_parameters import PARAMETERS

    args = build_parser().parse_args(['bag', '--output', 'out'])
    assert args.person_classes.split(',') == PARAMETERS['person_class_ids'].default
    for flag, parameter in [('min_detection_score', 'min_detection_score'), ('hog_upscale', 'hog_upscale'),
                            ('min_box_size', 'min_box_size'), ('track_iou_threshold', 'track_iou_threshold'),
                            ('track_max_age_s', 'track_max_age_s'), ('max_batch', 'max_batch'),
                            ('max_tracks', 'max_tracks')]:
        assert getattr(args, flag) == PARAMETERS[parameter].default, flag


def test_detections_filtered_to_nothing_are_counted_in_the_report(clips, onnx_model, tmp_path, caplog):
    from starpose_ros.core.person_filter import PersonFilter

    report = evaluate_bag(_options(clips['bags']['mcap'], onnx_model, tmp_path, video=False,
                                   persons=PersonFilter(frozenset({'Person'}))))
    counts = report['counts']
    assert counts['detections_in'] > 0 and counts['filtered_detections'] == counts['detections_in']
    assert counts['persons'] == 0
    assert 'every one of the' in caplog.text and 'filtered out' in caplog.text


def test_output_bag_holds_poses_only_unless_images_are_asked_for(clips, onnx_model, tmp_path):
    evaluate_bag(_options(clips['bags']['mcap'], onnx_model, tmp_path / 'poses', video=False))
    topics = bagio.bag_topics(tmp_path / 'poses' / 'output_bag', typestore=eval_typestore())
    assert list(topics) == [POSES_TOPIC]
    evaluate_bag(_options(clips['bags']['mcap'], onnx_model, tmp_path / 'images', video=False, bag_images=True))
    topics = bagio.bag_topics(tmp_path / 'images' / 'output_bag', typestore=eval_typestore())
    assert set(topics) == {POSES_TOPIC, OVERLAY_TOPIC, '/sr_mosaic'}


def test_a_full_disk_is_one_line_and_keeps_the_frames_written(clips, onnx_model, tmp_path, monkeypatch):
    real_write, written = bagio.BagWriter.write, []

    def write_until_full(self, topic, msg, timestamp_ns=None):
        if len(written) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(topic)
        real_write(self, topic, msg, timestamp_ns)

    monkeypatch.setattr(bagio.BagWriter, 'write', write_until_full)
    with pytest.raises(BagEvalError, match='cannot write .*output_bag: No space left on device'):
        evaluate_bag(_options(clips['bags']['mcap'], onnx_model, tmp_path, video=False))
    monkeypatch.undo()
    assert len(_read(tmp_path / 'output_bag', POSES_TOPIC)) == 3  # closed properly: readable
    assert len((tmp_path / 'frames.jsonl').read_text().splitlines()) == 3
    assert 'No space left' in json.loads((tmp_path / 'report.json').read_text())['error']


def test_output_mcap_chunks_carry_checksums_that_catch_flipped_bytes(clips, onnx_model, tmp_path):
    import mcap.reader

    evaluate_bag(_options(clips['bags']['mcap'], onnx_model, tmp_path / 'first', video=False, bag_images=True))
    bag = tmp_path / 'first' / 'output_bag'
    data = next(bag.glob('*.mcap'))
    with open(data, 'rb') as stream:  # the mcap library validates every chunk CRC it reads
        assert sum(1 for _ in mcap.reader.make_reader(stream, validate_crcs=True).iter_messages()) > 0
    corrupted = bytearray(data.read_bytes())
    middle = len(corrupted) // 2
    corrupted[middle:middle + 4096] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    data.write_bytes(bytes(corrupted))
    with pytest.raises(BagEvalError, match='checksum'):
        evaluate_bag(_options(bag, onnx_model, tmp_path / 'second', video=False, image_topic=OVERLAY_TOPIC,
                              detector='hog'))


def test_an_output_that_is_a_file_is_refused_first(clips, tmp_path, capsys):
    (tmp_path / 'out').write_text('my notes')
    assert main([str(clips['bags']['mcap']), '--output', str(tmp_path / 'out')]) == 1
    assert 'is a file' in capsys.readouterr().err and (tmp_path / 'out').read_text() == 'my notes'


def test_truncated_bag_is_a_clear_error(clips, onnx_model, tmp_path):
    bag = tmp_path / 'truncated'
    shutil.copytree(clips['bags']['mcap'], bag)
    data = next(bag.glob('*.mcap'))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    assert main([str(bag), '--model', str(onnx_model), '--output', str(tmp_path / 'out'), '--quiet']) == 1
    with pytest.raises(BagEvalError, match=r'cannot open bag .*truncated'):
        evaluate_bag(_options(bag, onnx_model, tmp_path / 'out'))


def _write_bag(path, source, stamps=None, break_image=None):
    """A copy of `source` with new header stamps per frame and optionally one undecodable image."""
    typestore = eval_typestore()
    images, detections = _read(source, '/image'), _read(source, '/detections')
    with bagio.BagWriter(path, storage='mcap', typestore=typestore) as bag:
        for k, (image, detection) in enumerate(zip(images, detections, strict=True)):
            stamp = stamps[k] if stamps else bagio.header_stamp_ns(image.msg)
            rgb = bagio.decode_image(image.msg)
            msg = bagio.image_message(typestore, rgb, stamp, 'camera')
            if k == break_image:
                msg.data = msg.data[: len(msg.data) // 2]  # step * height no longer matches the data
            bag.write('/image', msg, image.timestamp_ns)
            dets, _ = tracked_detections(detection.msg, ANY_CLASS)
            bag.write('/detections', bagio.detections_message(typestore, dets, stamp, 'camera'), image.timestamp_ns)
    return path


def test_corrupt_image_stops_with_an_error_and_keeps_earlier_frames(clips, onnx_model, tmp_path):
    bag = _write_bag(tmp_path / 'corrupt', clips['bags']['sqlite3'], break_image=2)
    with pytest.raises(BagEvalError, match=r'image 2 on /image .* cannot be decoded'):
        evaluate_bag(_options(bag, onnx_model, tmp_path / 'out'))
    assert len(_read(tmp_path / 'out' / 'output_bag', POSES_TOPIC)) == 2
    assert len((tmp_path / 'out' / 'frames.jsonl').read_text().splitlines()) == 2
    report = json.loads((tmp_path / 'out' / 'report.json').read_text())
    assert 'cannot be decoded' in report['error'] and report['counts']['results'] == 2


def test_out_of_order_stamps_warn_or_stop(clips, onnx_model, tmp_path):
    base = 1_700_000_000 * 10**9
    bag = _write_bag(tmp_path / 'unordered', clips['bags']['sqlite3'],
                     stamps=[base, base + 80_000_000, base + 40_000_000, base + 120_000_000])
    report = evaluate_bag(_options(bag, onnx_model, tmp_path / 'warn'))
    assert report['counts']['out_of_order_stamps'] == 1
    assert len(_read(tmp_path / 'warn' / 'output_bag', POSES_TOPIC)) == FRAMES
    with pytest.raises(BagEvalError, match='image 2 has header stamp .* earlier than the previous'):
        evaluate_bag(_options(bag, onnx_model, tmp_path / 'error', out_of_order='error'))
    assert len(_read(tmp_path / 'error' / 'output_bag', POSES_TOPIC)) == 2


def test_hog_detector_and_calibration_windows(clips, onnx_model, tmp_path):
    windows = tmp_path / 'calibration.npy'
    report = evaluate_bag(_options(clips['bags']['mcap'], onnx_model, tmp_path / 'hog', detector='hog', video=False,
                                   max_frames=2))
    assert report['counts']['frames'] == 2 and 'HOG' in report['run']['detections']
    assert len(_read(tmp_path / 'hog' / 'output_bag', POSES_TOPIC)) == 2
    report = evaluate_bag(_options(clips['bags']['mcap'], onnx_model, tmp_path / 'cal', save_calibration=windows,
                                   video=False))
    saved = np.load(windows)
    assert saved.dtype == np.uint8 and saved.shape == (report['counts']['persons'], 5, 64, 48, 3)
    # without the suffix numpy adds .npy: the report names the file that exists
    report = evaluate_bag(_options(clips['bags']['mcap'], onnx_model, tmp_path / 'cal', video=False,
                                   save_calibration=tmp_path / 'windows_dir'))
    assert report['outputs']['calibration windows'].startswith(str(tmp_path / 'windows_dir.npy'))
    assert (tmp_path / 'windows_dir.npy').is_file()
    # the first run's joint-AP plot (it had --gt-json) does not survive a run without ground truth
    (tmp_path / 'cal' / 'plots' / 'joint_ap.png').write_bytes(b'old')
    evaluate_bag(_options(clips['bags']['mcap'], onnx_model, tmp_path / 'cal', video=False, max_frames=2))
    assert not (tmp_path / 'cal' / 'plots' / 'joint_ap.png').exists()


def test_demo_writes_video_report_and_bag(onnx_model, tmp_path, capsys):
    report = run_demo(tmp_path / 'demo', model=onnx_model, frames=3, progress=False, real=False)
    assert report['counts']['frames'] == 3 and report['counts']['persons'] > 0
    for name in ('overlay.mp4', 'report.md', 'report.json', 'frames.jsonl', 'output_bag', 'plots/filmstrip.png'):
        assert (tmp_path / 'demo' / name).exists(), name
    assert 'PoseTrack AP Total' in report['accuracy']


def test_demo_model_ships_with_the_package():
    from starpose_ros.core.models import BUNDLED_MODEL
    assert BUNDLED_MODEL.is_file(), f'{BUNDLED_MODEL} is missing: the README demo needs it'


def test_real_demo_replays_the_cached_clip_shrunk_x4_with_hog(onnx_model, tmp_path, monkeypatch):
    """The demo's real-footage path on a cached stand-in clip (the fixture's real frames, re-enlarged)."""
    cache = tmp_path / 'cache'
    cache.mkdir()
    frames = sorted((REPO_ROOT / 'test' / 'fixtures' / 'vtest_x4' / 'images').glob('*.png'))[:8]
    writer = cv2.VideoWriter(str(cache / 'vtest.avi'), cv2.VideoWriter_fourcc(*'MJPG'), 10, (768, 576))
    for path in frames:
        writer.write(cv2.resize(cv2.imread(str(path)), (768, 576), interpolation=cv2.INTER_CUBIC))
    writer.release()
    monkeypatch.setenv('STARPOSE_CACHE', str(cache))
    report = run_demo(tmp_path / 'demo', model=onnx_model, frames=8, progress=False)
    assert report['counts']['frames'] == 8 and report['counts']['persons'] > 0
    assert 'HOG' in report['run']['detections'] and 'accuracy' not in report
    assert (tmp_path / 'demo' / 'overlay.mp4').stat().st_size > 0


def test_demo_falls_back_to_a_synthetic_clip_when_the_footage_cannot_be_fetched(onnx_model, tmp_path, monkeypatch,
                                                                                  capsys):
    monkeypatch.setenv('STARPOSE_CACHE', str(tmp_path / 'empty_cache'))
    monkeypatch.setenv('PATH', str(tmp_path))  # no apt-get
    report = run_demo(tmp_path / 'demo', model=onnx_model, frames=3, progress=False)
    assert 'real footage unavailable' in capsys.readouterr().out
    assert report['counts']['frames'] == 3 and 'PoseTrack AP Total' in report['accuracy']


def test_method_switch_runs_the_baselines_on_the_same_pose_net(clips, tiny_model_files, tmp_path):
    onnx, checkpoint = tiny_model_files
    reports = {method: evaluate_bag(_options(clips['bags']['mcap'], checkpoint, tmp_path / method, method=method,
                                             gt_json=clips['gt'], video=False))
               for method in ('star_pose', 'bicubic')}
    assert reports['bicubic']['run']['method'] == 'bicubic'
    assert reports['bicubic']['accuracy'] != reports['star_pose']['accuracy']
    with pytest.raises(BagEvalError, match='--method bicubic'):
        evaluate_bag(_options(clips['bags']['mcap'], onnx, tmp_path / 'onnx', method='bicubic', video=False))


@pytest.mark.ros
def test_the_live_node_publishes_the_same_poses(clips, onnx_model, tmp_path):
    """Play the bag's frames into the node process over DDS, one at a time (no frame dropping)."""
    import rclpy
    from lifecycle_msgs.msg import Transition
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from starpose_msgs.msg import PersonPoseArray, TrackedDetection, TrackedDetectionArray
    from starpose_ros.ros_conversions import make_header, rgb_to_image_msg
    from starpose_testing.node_harness import NodeProcess, RosClient

    bag = clips['bags']['sqlite3']
    evaluate_bag(_options(bag, onnx_model, tmp_path / 'replay', video=False))
    expected = _read(tmp_path / 'replay' / 'output_bag', POSES_TOPIC)
    namespace = '/t_bag_replay'
    context = rclpy.Context()
    rclpy.init(context=context)
    node = NodeProcess(tmp_path / 'node.log', namespace, {
        'model_path': str(onnx_model), 'detections_type': 'starpose_msgs', 'publish_markers': False,
        'publish_sr_crops': False})
    client = RosClient(context)
    try:
        received = client.collect(PersonPoseArray, f'{namespace}/poses', 50)
        assert client.change_state(node.fqn, Transition.TRANSITION_CONFIGURE), node.log()
        assert client.change_state(node.fqn, Transition.TRANSITION_ACTIVATE), node.log()
        images = client.node.create_publisher(Image, f'{namespace}/image', qos_profile_sensor_data)
        detections = client.node.create_publisher(TrackedDetectionArray, f'{namespace}/detections', 10)
        assert client.wait_for(lambda: images.get_subscription_count() and detections.get_subscription_count(), 20)

        def answered(stamp):
            return any(bagio.header_stamp_ns(m) == stamp for m in list(received))
        for image, boxes in zip(_read(bag, '/image'), _read(bag, '/detections'), strict=True):
            stamp = bagio.header_stamp_ns(image.msg)
            header = make_header(stamp, image.msg.header.frame_id)
            detections.publish(TrackedDetectionArray(header=header, detections=[
                TrackedDetection(id=d.id, class_id=d.class_id, score=d.score, center_x=d.center_x,
                                 center_y=d.center_y, size_x=d.size_x, size_y=d.size_y) for d in boxes.msg.detections]))
            rgb = bagio.decode_image(image.msg)
            for _attempt in range(3):  # images are best effort: resend one the node never saw
                images.publish(rgb_to_image_msg(rgb, header))
                if client.wait_for(lambda s=stamp: answered(s), 20):
                    break
            assert answered(stamp), node.log()[-3000:]
        live = {bagio.header_stamp_ns(m): m for m in list(received)}
        assert len(live) == len(expected) == FRAMES
        for replayed in expected:
            published = live[bagio.header_stamp_ns(replayed.msg)]
            assert [p.track_id for p in published.poses] == [p.track_id for p in replayed.msg.poses]
            np.testing.assert_allclose(_keypoints(published), _keypoints(replayed.msg), atol=1e-3)
    finally:
        client.close()
        node.stop()
        context.try_shutdown()
