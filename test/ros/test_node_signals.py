"""The node process ends within 2 s of SIGINT or SIGTERM in every state, cleanly (exit 0, no traceback).

`ros2 launch`, systemd and `docker stop` send SIGINT or SIGTERM and then wait; a node that hangs
(rclpy's SIGTERM handler once left `spin()` blocked at 0 % CPU) gets killed and loses its last
frames. States: unconfigured, inside a long configure (the bundled checkpoint exported to ONNX
into an empty cache), and active with frames streaming through the model.
"""
import signal
import threading
import time

import cv2
import numpy as np
import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from starpose_msgs.msg import PersonPoseArray
from starpose_testing.node_harness import NodeProcess, RosClient, tiny_onnx_model

pytestmark = pytest.mark.ros

EXIT_WITHIN_S = 2.0


def _signal_and_time_exit(node: NodeProcess, signum: int) -> float:
    started = time.monotonic()
    node.process.send_signal(signum)
    try:
        node.process.wait(timeout=30)
    except Exception:  # noqa: BLE001 - report the hang with the log, then kill
        node.process.kill()
        node.process.wait()
        raise AssertionError(f'no exit within 30 s of signal {signum}:\n{node.log()}') from None
    return time.monotonic() - started


def _assert_clean_exit(node: NodeProcess, seconds: float) -> None:
    log = node.log()
    node.stop()
    assert seconds < EXIT_WITHIN_S, f'exit took {seconds:.2f} s\n{log}'
    assert node.process.returncode == 0, log
    assert 'Traceback' not in log, log


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_unconfigured_node_exits_on_the_signal(rclpy_context, tmp_path, signum):
    node = NodeProcess(tmp_path / 'node.log', '/t_sig_idle', {})
    client = RosClient(rclpy_context)
    try:
        assert client.get_state(node.fqn, timeout=90) == 'unconfigured'  # a loaded machine can be slow
    finally:
        client.close()
    _assert_clean_exit(node, _signal_and_time_exit(node, signum))


def test_node_inside_a_long_configure_exits_on_sigterm(rclpy_context, tmp_path):
    # an empty cache: configure exports the bundled checkpoint to ONNX, which takes seconds
    node = NodeProcess(tmp_path / 'node.log', '/t_sig_configure', {}, env={'XDG_CACHE_HOME': str(tmp_path)})
    client = RosClient(rclpy_context)
    try:
        assert client.get_state(node.fqn, timeout=90) == 'unconfigured'  # a loaded machine can be slow
        request = ChangeState.Request()
        request.transition.id = Transition.TRANSITION_CONFIGURE
        service = client.node.create_client(ChangeState, f'{node.fqn}/change_state')
        assert service.wait_for_service(timeout_sec=10)
        service.call_async(request)
        # the export has started once torch writes into the cache folder
        assert client.wait_for(lambda: (tmp_path / 'starpose').exists(), 30), node.log()
        time.sleep(0.5)
        seconds = _signal_and_time_exit(node, signal.SIGTERM)
    finally:
        client.close()
    assert 'configured:' not in node.log(), 'the signal came after configure: make the test export slower'
    _assert_clean_exit(node, seconds)


def _camera_frame(index: int) -> Image:
    image = np.full((480, 640, 3), 190, np.uint8)
    for x in (120, 320, 520):  # three figures: the model runs on every frame
        cv2.circle(image, (x, 130), 22, (60, 40, 30), -1)
        cv2.rectangle(image, (x - 25, 155), (x + 25, 290), (40, 60, 150), -1)
        cv2.rectangle(image, (x - 22, 290), (x + 22, 400), (30, 30, 30), -1)
    msg = Image(height=480, width=640, encoding='rgb8', step=640 * 3, data=image.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(1_000_000_000 + index * 50_000_000, 1_000_000_000)
    return msg


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_active_node_with_frames_in_flight_exits_on_the_signal(rclpy_context, tmp_path, request, signum):
    model = tiny_onnx_model(request.config)
    node = NodeProcess(tmp_path / 'node.log', '/t_sig_active', {'model_path': str(model), 'detector': 'hog'})
    client = RosClient(rclpy_context)
    stop_camera = threading.Event()
    try:
        assert client.change_state(node.fqn, Transition.TRANSITION_CONFIGURE), node.log()
        assert client.change_state(node.fqn, Transition.TRANSITION_ACTIVATE), node.log()
        poses = client.collect(PersonPoseArray, f'{node.fqn.rsplit("/", 1)[0]}/poses')
        camera = client.node.create_publisher(Image, '/t_sig_active/image', qos_profile_sensor_data)

        def stream():
            index = 0
            while not stop_camera.is_set():
                camera.publish(_camera_frame(index))
                index += 1
                time.sleep(0.02)

        threading.Thread(target=stream, daemon=True).start()
        assert client.wait_for(lambda: len(poses) >= 3, 30), node.log()
        seconds = _signal_and_time_exit(node, signum)
    finally:
        stop_camera.set()
        client.close()
    _assert_clean_exit(node, seconds)
