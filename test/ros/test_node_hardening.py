"""Hardening of the live node (real rclpy and DDS): silent failures become visible, bad states stay safe.

- detections filtered to nothing are counted and turn `/diagnostics` to WARN;
- a misspelt parameter in a params file is named in a warning;
- the Fast DDS hint is given once, and never for a camera that merely pauses;
- a frame failing in the pipeline logs its traceback; a worker stuck in the model does not get
  its backend closed under it; detections over `max_tracks` reach `/diagnostics`;
- `min_detection_score` also applies to the built-in HOG detector.
"""
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from starpose_msgs.msg import TrackedDetection, TrackedDetectionArray
from starpose_ros.core.types import FrameInput
from starpose_ros.node import FASTDDS_PROFILE_HINT
from starpose_testing.node_harness import NodeProcess, RosClient, node_in_process, tiny_onnx_model

pytestmark = pytest.mark.ros


def _image(sec: int) -> Image:
    msg = Image(height=120, width=160, encoding='rgb8', step=160 * 3, data=bytes(160 * 120 * 3))
    msg.header.stamp.sec = sec
    return msg


def _detections(sec: int, count: int, class_id: str = 'person') -> TrackedDetectionArray:
    msg = TrackedDetectionArray(detections=[
        TrackedDetection(id='', class_id=class_id, score=0.9, center_x=20.0 + 25 * i, center_y=60.0,
                         size_x=20.0, size_y=50.0) for i in range(count)])
    msg.header.stamp.sec = sec
    return msg


def _wait(predicate, timeout: float = 10.0) -> bool:
    return RosClient.wait_for(predicate, timeout)


def test_detections_filtered_to_nothing_are_counted_and_warned(rclpy_context, request):
    model = tiny_onnx_model(request.config)
    parameters = [Parameter('model_path', value=str(model)), Parameter('person_class_ids', value=['Person']),
                  Parameter('detections_type', value='starpose_msgs'), Parameter('diagnostics_period_s', value=0.2)]
    with node_in_process(rclpy_context, '/t_filtered', parameters, 'filtered_peer') as (node, peer):
        statuses, ours = [], node.get_fully_qualified_name()
        peer.create_subscription(DiagnosticArray, '/diagnostics',
                                 lambda m: statuses.extend(s for s in m.status if s.hardware_id == ours), 10)
        images = peer.create_publisher(Image, 'image', 10)
        boxes = peer.create_publisher(TrackedDetectionArray, 'detections', 10)
        assert node.trigger_configure().name == 'SUCCESS' and node.trigger_activate().name == 'SUCCESS'
        assert _wait(lambda: node.count_subscribers('/t_filtered/detections') == 1)
        for sec in range(1, 4):
            boxes.publish(_detections(sec, 2))  # class 'person' is not 'Person'
            images.publish(_image(sec))
        assert _wait(lambda: node.diagnostics_values()['detections_in'] == 6), node.diagnostics_values()
        values = node.diagnostics_values()
        assert values['filtered_detections'] == 6 and values['pipeline_persons'] == 0
        assert _wait(lambda: any('filtered out' in s.message for s in statuses))
        assert [s.level for s in statuses if 'filtered out' in s.message][-1] == DiagnosticStatus.WARN


def test_a_misspelt_parameter_in_a_params_file_is_named(rclpy_context, tmp_path):
    params = tmp_path / 'params.yaml'
    params.write_text('/**:\n  ros__parameters:\n    detectr: hog\n    max_batch: 4\n')
    node = NodeProcess(tmp_path / 'node.log', '/t_unknown', {}, params_file=params)
    client = RosClient(rclpy_context)
    try:
        assert client.get_state(node.fqn) == 'unconfigured'
        assert client.wait_for(lambda: 'unknown parameter(s) ignored: detectr' in node.log(), 10), node.log()
        assert 'max_batch' not in node.log().split('ignored:')[1].split('(')[0]
    finally:
        client.close()
        node.stop()


def _active_node_process(client: RosClient, tmp_path, namespace: str, model) -> NodeProcess:
    node = NodeProcess(tmp_path / f'{namespace[1:]}.log', namespace,
                       {'model_path': str(model), 'detector': 'hog', 'no_image_warning_s': 0.5})
    assert client.change_state(node.fqn, Transition.TRANSITION_CONFIGURE), node.log()
    assert client.change_state(node.fqn, Transition.TRANSITION_ACTIVATE), node.log()
    return node


def test_the_fast_dds_hint_comes_once_and_not_for_a_paused_camera(rclpy_context, tmp_path, request):
    model = tiny_onnx_model(request.config)
    client = RosClient(rclpy_context)
    silent_node = _active_node_process(client, tmp_path, '/t_hint_silent', model)
    paused_node = _active_node_process(client, tmp_path, '/t_hint_paused', model)
    try:
        client.node.create_publisher(Image, '/t_hint_silent/image', 1)  # delivers nothing
        paused_camera = client.node.create_publisher(Image, '/t_hint_paused/image', 10)
        assert client.wait_for(lambda: client.node.count_subscribers('/t_hint_paused/image') == 1, 10)
        paused_camera.publish(_image(1))  # one image, then a pause far longer than no_image_warning_s
        assert client.wait_for(lambda: FASTDDS_PROFILE_HINT in silent_node.log(), 10), silent_node.log()
        time.sleep(3.0)  # six warning periods
        assert silent_node.log().count(FASTDDS_PROFILE_HINT) == 1, silent_node.log()
        assert FASTDDS_PROFILE_HINT not in paused_node.log(), paused_node.log()
    finally:
        client.close()
        silent_node.stop()
        paused_node.stop()


class _Logger:
    def __init__(self):
        self.errors = []

    def error(self, text, **_):
        self.errors.append(text)


def test_a_failing_frame_logs_its_traceback(rclpy_context, request, monkeypatch):
    model = tiny_onnx_model(request.config)
    with node_in_process(rclpy_context, '/t_frame_error', [Parameter('model_path', value=str(model))],
                         'frame_error_peer') as (node, _peer):
        logger = _Logger()
        monkeypatch.setattr(node, 'get_logger', lambda: logger)
        try:
            raise RuntimeError('boom in the backend')
        except RuntimeError as error:
            node._on_frame_error((FrameInput(5, 'cam', np.zeros((4, 4, 3), np.uint8)), 0.0), error)
        assert node._stats.pipeline_errors == 1
        assert 'RuntimeError: boom in the backend' in logger.errors[0]
        assert 'Traceback (most recent call last)' in logger.errors[0] and 'test_node_hardening.py' in logger.errors[0]


def test_a_worker_stuck_in_the_model_keeps_its_backend(rclpy_context, request):
    model = tiny_onnx_model(request.config)
    parameters = [Parameter('model_path', value=str(model)), Parameter('detector', value='none')]
    with node_in_process(rclpy_context, '/t_stuck', parameters, 'stuck_peer') as (node, _peer):
        assert node.trigger_configure().name == 'SUCCESS' and node.trigger_activate().name == 'SUCCESS'
        inside, release, closed = threading.Event(), threading.Event(), []
        backend = node._backend
        real_close = backend.close
        backend.close = lambda: closed.append(True) or real_close()

        def stuck_process(frame):
            inside.set()
            release.wait(30)

        node._pipeline.process = stuck_process
        node._worker.submit((FrameInput(1, 'cam', np.zeros((8, 8, 3), np.uint8)), time.monotonic()))
        assert inside.wait(5)
        started = time.monotonic()
        node.trigger_deactivate()
        node.trigger_cleanup()
        assert time.monotonic() - started < 5.0
        assert not closed, 'the backend was closed under a running model call'
        release.set()


def test_over_capacity_detections_and_the_hog_threshold_reach_the_node(rclpy_context, request):
    model = tiny_onnx_model(request.config)
    parameters = [Parameter('model_path', value=str(model)), Parameter('max_tracks', value=2),
                  Parameter('detections_type', value='starpose_msgs')]
    with node_in_process(rclpy_context, '/t_capacity', parameters, 'capacity_peer') as (node, peer):
        images = peer.create_publisher(Image, 'image', 10)
        boxes = peer.create_publisher(TrackedDetectionArray, 'detections', 10)
        assert node.trigger_configure().name == 'SUCCESS' and node.trigger_activate().name == 'SUCCESS'
        assert _wait(lambda: node.count_subscribers('/t_capacity/detections') == 1)
        boxes.publish(_detections(1, 5))
        images.publish(_image(1))
        assert _wait(lambda: node.diagnostics_values()['frames_out'] == 1), node.diagnostics_values()
        assert node.diagnostics_values()['pipeline_over_capacity_detections'] == 3
    hog_parameters = [Parameter('model_path', value=str(model)), Parameter('detector', value='hog'),
                      Parameter('min_detection_score', value=0.6)]
    with node_in_process(rclpy_context, '/t_hog_score', hog_parameters, 'hog_peer') as (node, _peer):
        assert node.trigger_configure().name == 'SUCCESS'
        assert node._pipeline.detector.min_score == 0.6
