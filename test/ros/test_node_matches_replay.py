"""The live node and the bag replay give identical poses on the same bag (#11's acceptance).

One short synthetic clip (`starpose-synth`'s generator, PoseTrack JSON with track ids) becomes a
rosbag2 through `starpose-video2bag`; `starpose-bag-eval` replays it (its `main`, in process)
with the bundled model on ONNX Runtime, every option at its default. The node runs in its own
process (`python -m starpose_ros.node`, real rclpy and Fast DDS on loopback), also with its
defaults (empty `model_path` = the bundled model, backend auto = ONNX Runtime, 2 threads), and
gets the bag's messages as `ros2 bag play` would send them: each message's raw CDR from the bag,
deserialised into the rclpy type, so headers, pixels and boxes are the bag's bytes.

Frames go in lockstep (detections, image, then wait for that stamp's pose array), so the node's
newest-wins slot never drops one and its tracker sees the same sequence as the replay. Both
faces run the same model file (the bundled checkpoint's cached ONNX export) on the same backend
with the same thread count and the same batches (one model call per frame, same people), and
ONNX Runtime on the CPU is deterministic for that (repeated replays give equal float32; on this
model even 1, 2 and runtime-chosen threads do): keypoints must be bit-identical, no tolerance.
A face that maps keypoints or boxes differently (even by 0.5 px) fails here.
"""
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy.serialization
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Image

from starpose_msgs.msg import PersonPoseArray, TrackedDetectionArray
from starpose_ros.bag_tools import bag_eval, bagio, video2bag
from starpose_ros.bag_tools.replay_outputs import POSES_TOPIC
from starpose_testing.node_harness import NodeProcess, RosClient, diagnostics_of

pytestmark = pytest.mark.ros

NAMESPACE = '/t_node_vs_replay'
FRAMES = 10
ANSWER_TIMEOUT_S = 60.0  # the first frame also warms the model up; a loaded CI machine is slow
RESEND_AFTER_S = (10.0, 20.0, 30.0)  # a frame unanswered this long is sent again (see _send_in_lockstep)


def _stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


@pytest.fixture(scope='module')
def clip_bag(tmp_path_factory) -> Path:
    """A 10-frame 320x240 synthetic clip (2-3 people, track ids) as a rosbag2 with /image and /detections."""
    from starpose_training.synthetic.dataset import generate_dataset

    root = tmp_path_factory.mktemp('node_vs_replay')
    manifest = generate_dataset(root / 'data', 'small', 5, frames=FRAMES, videos={'val': 1}, people=(2, 3))
    sequence = manifest['splits']['val'][0]
    bag = root / 'bag'
    assert video2bag.main([str(root / 'data' / 'images' / 'val' / sequence), str(bag), '--posetrack-json',
                           str(root / 'data' / 'annotations' / 'val' / f'{sequence}.json'),
                           '--fps', str(manifest['config']['fps'])]) == 0
    return bag


def _raw_frames(bag: Path) -> list[tuple[int, bytes, bytes]]:
    """(header stamp, raw detections CDR, raw image CDR) per frame, in bag order, as `ros2 bag play` reads them."""
    by_topic: dict[str, list[bytes]] = {'/image': [], '/detections': []}
    with AnyReader([bag], default_typestore=bagio.starpose_typestore()) as reader:
        connections = [c for c in reader.connections if c.topic in by_topic]
        for connection, _time, raw in reader.messages(connections=connections):
            by_topic[connection.topic].append(bytes(raw))
    assert len(by_topic['/image']) == len(by_topic['/detections']) == FRAMES
    frames = []
    for raw_detections, raw_image in zip(by_topic['/detections'], by_topic['/image'], strict=True):
        stamp = _stamp_ns(rclpy.serialization.deserialize_message(raw_image, Image).header)
        assert _stamp_ns(rclpy.serialization.deserialize_message(raw_detections, TrackedDetectionArray).header) \
            == stamp
        frames.append((stamp, raw_detections, raw_image))
    return frames


def _replay_poses(bag: Path, output: Path) -> list:
    """The replay's /poses messages (rosbags types), read back from its output bag."""
    assert bag_eval.main([str(bag), '--output', str(output), '--no-video', '--quiet']) == 0
    return [item.msg for item in bagio.read_messages(output / 'output_bag', [POSES_TOPIC])]


def _transition(client: RosClient, node: NodeProcess, transition_id: int, goal: str) -> None:
    """One lifecycle transition (the harness settles a lost answer by asking the node's state)."""
    assert client.change_state(node.fqn, transition_id, timeout=120), node.log()[-3000:]
    assert client.get_state(node.fqn) == goal, node.log()[-3000:]


def _send_in_lockstep(client: RosClient, node: NodeProcess, frames: list, answers: list, diagnostics: list) -> None:
    """Each frame's detections, then its image, then wait for the pose array of its stamp.

    A frame still unanswered after RESEND_AFTER_S is sent again (both messages, same bytes): a
    message the transport lost is then delivered, and a copy of one the node has is dropped by its
    pairer as a duplicate stamp (fewer than its restart threshold of 5 in a row), so each stamp is
    still processed once, in order.
    """
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    images = client.node.create_publisher(Image, f'{NAMESPACE}/image', reliable)
    detections = client.node.create_publisher(TrackedDetectionArray, f'{NAMESPACE}/detections', reliable)
    assert client.wait_for(lambda: images.get_subscription_count() and detections.get_subscription_count(), 20), \
        node.log()
    time.sleep(0.5)  # the node's side of the match

    def answered(stamp: int) -> bool:
        return any(_stamp_ns(a.header) == stamp for a in list(answers))

    for stamp, raw_detections, raw_image in frames:
        started = time.monotonic()
        for resend_at in (0.0, *RESEND_AFTER_S):
            if client.wait_for(lambda s=stamp: answered(s), resend_at - (time.monotonic() - started), 0.005):
                break
            detections.publish(rclpy.serialization.deserialize_message(raw_detections, TrackedDetectionArray))
            images.publish(rclpy.serialization.deserialize_message(raw_image, Image))
        assert client.wait_for(lambda s=stamp: answered(s), ANSWER_TIMEOUT_S - (time.monotonic() - started)), \
            (f'no pose array for stamp {stamp} in {ANSWER_TIMEOUT_S} s; diagnostics '
             f'{diagnostics_of(list(diagnostics), node.fqn)}\n{node.log()[-3000:]}')
    time.sleep(0.5)  # anything the node still had to say (there should be nothing)


def _node_poses(rclpy_context, log_dir: Path, frames: list, replay) -> tuple[list[PersonPoseArray], list]:
    """Start the node with its defaults, run `replay` while it loads, then feed it the frames in lockstep.

    Returns the node's pose arrays and what `replay` returned. Only transport settings differ
    from the defaults: detections as starpose_msgs (the bag's type) and reliable images (a lost
    frame would stall the lockstep); neither touches a pose.
    """
    node = NodeProcess(log_dir / 'node.log', NAMESPACE, {'detections_type': 'starpose_msgs',
                                                        'image_reliability': 'reliable'})
    client = RosClient(rclpy_context)
    try:
        answers: list[PersonPoseArray] = client.collect(PersonPoseArray, f'{NAMESPACE}/poses', 50)
        diagnostics = client.collect(DiagnosticArray, '/diagnostics', 10)
        replayed = replay()  # the node process imports meanwhile
        _transition(client, node, Transition.TRANSITION_CONFIGURE, 'inactive')
        _transition(client, node, Transition.TRANSITION_ACTIVATE, 'active')
        _send_in_lockstep(client, node, frames, answers, diagnostics)
        assert node.alive(), node.log()
    finally:
        client.close()
        exit_code = node.stop()
    log = node.log()
    assert exit_code == 0 and 'Traceback' not in log, log[-5000:]
    return list(answers), replayed


def _persons(msg) -> list[tuple[str, tuple[float, ...], float]]:
    return [(p.track_id, (p.bbox_x, p.bbox_y, p.bbox_width, p.bbox_height), p.score) for p in msg.poses]


def _keypoints(msg) -> np.ndarray:
    """(persons, 17, 3) x, y, score as the float32 of the message."""
    keypoints = [[[k.x, k.y, k.score] for k in p.keypoints] for p in msg.poses]
    return np.array(keypoints, dtype=np.float32).reshape(-1, 17, 3)


def test_node_and_replay_give_identical_poses_on_the_same_bag(rclpy_context, clip_bag, tmp_path):
    frames = _raw_frames(clip_bag)
    node_answers, replay_answers = _node_poses(rclpy_context, tmp_path, frames,
                                               lambda: _replay_poses(clip_bag, tmp_path / 'replay'))
    stamps = [stamp for stamp, _, _ in frames]
    assert [_stamp_ns(m.header) for m in replay_answers] == stamps  # the replay: one per image, in order
    assert [_stamp_ns(m.header) for m in node_answers] == stamps  # the node: one per image, none dropped or extra
    assert all(m.poses for m in replay_answers)  # people in every frame: there is something to compare
    for index, (live, replayed) in enumerate(zip(node_answers, replay_answers, strict=True)):
        where = f'frame {index} (stamp {stamps[index]})'
        assert (live.header.frame_id, live.keypoint_layout) == (replayed.header.frame_id, replayed.keypoint_layout), \
            where
        assert _persons(live) == _persons(replayed), where  # track ids, boxes, scores, in the same order
        # Bit-identical: one model file, one backend (ONNX Runtime, CPU, 2 intra-op threads) and
        # one pipeline on the same bytes; the float32 of both messages must be equal.
        np.testing.assert_array_equal(_keypoints(live), _keypoints(replayed), err_msg=where)
