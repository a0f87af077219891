"""Fuzz the live node: hundreds of malformed images and detections between good frames.

The node runs in its own process (as `ros2 run` starts it) and gets everything over real DDS,
raw `sensor_msgs/Image` and `CompressedImage` transports alike. After every burst of bad input
a good frame follows; the node must answer each good frame, stay active, and count every bad
image in `/diagnostics`. Reliable image QoS makes the counts exact (no loopback drops).
"""
import time

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from sensor_msgs.msg import CompressedImage, Image

from starpose_msgs.msg import PersonPoseArray, TrackedDetection, TrackedDetectionArray
from starpose_testing.node_harness import NodeProcess, RosClient, diagnostics_of, tiny_onnx_model

pytestmark = pytest.mark.ros

GOOD_FRAMES = 12
BAD_PER_GOOD = 25  # 300 malformed messages per transport
HEIGHT, WIDTH = 96, 128


def _stamped(msg, sec: int):
    msg.header.stamp.sec = sec
    msg.header.frame_id = 'camera'
    return msg


def _picture(rng) -> np.ndarray:
    return rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _bad_raw(rng, k: int) -> Image:
    """A raw image whose fields disagree (each kind the decoder must refuse)."""
    good = _picture(rng).tobytes()
    kinds = [
        dict(height=HEIGHT, width=WIDTH, encoding='rgb8', step=WIDTH * 3, data=good[:-7]),  # short data
        dict(height=100_000, width=100_000, encoding='rgb8', step=300_000, data=good),  # a huge claimed size
        dict(height=HEIGHT, width=WIDTH, encoding='rgb8', step=WIDTH, data=good),  # step below width * 3
        dict(height=HEIGHT, width=WIDTH, encoding='yuv_strange', step=WIDTH * 3, data=good),
        dict(height=0, width=WIDTH, encoding='rgb8', step=WIDTH * 3, data=b''),
        dict(height=HEIGHT, width=WIDTH, encoding='', step=WIDTH * 3, data=good),
        dict(height=HEIGHT, width=WIDTH, encoding='rgb8', step=2**31, data=good),
    ]
    return Image(**kinds[k % len(kinds)])


def _bad_compressed(rng, k: int) -> CompressedImage:
    ok, jpeg = cv2.imencode('.jpg', _picture(rng))
    assert ok
    huge_png = (b'\x89PNG\r\n\x1a\n' + b'\x00\x00\x00\x0dIHDR' + (100_000).to_bytes(4, 'big') * 2
                + b'\x08\x02\x00\x00\x00' + b'\x00' * 4 + b'\x00\x00\x00\x00IEND\xaeB`\x82')
    kinds = [
        ('jpeg', rng.integers(0, 256, 500, dtype=np.uint8).tobytes()),  # random bytes
        ('jpeg', jpeg.tobytes()[:len(jpeg) // 3]),  # a truncated JPEG
        ('png', huge_png),  # header claims 100000 x 100000
        ('jpeg', b''),
        ('jpeg', b'\xff\xd8\xff\xdb' + bytes(64)),  # a JPEG start marker, then nothing decodable
    ]
    image_format, data = kinds[k % len(kinds)]
    return CompressedImage(format=image_format, data=data)


def _bad_detections(rng, k: int) -> TrackedDetectionArray:
    """Boxes the pipeline must reject or clip: NaN, inf, negative, enormous, off the image; many of them."""
    values = [float('nan'), float('inf'), -1e30, 1e30, -50.0, 0.0]
    count = int(rng.integers(1, 200)) if k % 5 == 0 else 3
    boxes = [TrackedDetection(id=str(rng.integers(0, 5)) if k % 2 else '', class_id='person', score=0.9,
                              center_x=float(rng.choice(values)), center_y=float(rng.uniform(-50, 150)),
                              size_x=float(rng.choice(values)), size_y=float(rng.uniform(-5, 300)))
             for _ in range(count)]
    return TrackedDetectionArray(detections=boxes)


def _good(transport: str, rng):
    picture = _picture(rng)
    if transport == 'compressed':
        ok, jpeg = cv2.imencode('.jpg', picture)
        return CompressedImage(format='jpeg', data=jpeg.tobytes())
    return Image(height=HEIGHT, width=WIDTH, encoding='rgb8', step=WIDTH * 3, data=picture.tobytes())


def _good_detections() -> TrackedDetectionArray:
    return TrackedDetectionArray(detections=[
        TrackedDetection(id='', class_id='person', score=0.9, center_x=40.0, center_y=50.0, size_x=20.0, size_y=60.0),
        TrackedDetection(id='', class_id='person', score=0.8, center_x=90.0, center_y=50.0, size_x=18.0, size_y=55.0)])


@pytest.mark.parametrize('transport', ['raw', 'compressed'])
def test_the_node_answers_every_good_frame_between_malformed_input(rclpy_context, tmp_path, request, transport):
    model = tiny_onnx_model(request.config)
    namespace = f'/t_fuzz_{transport}'
    node = NodeProcess(tmp_path / 'node.log', namespace, {
        'model_path': str(model), 'image_transport': transport, 'image_reliability': 'reliable',
        'image_queue_depth': 100, 'detections_type': 'starpose_msgs', 'diagnostics_period_s': 0.2,
        'pairing_max_pending': 1000})
    client = RosClient(rclpy_context)
    rng = np.random.default_rng(11)
    try:
        assert client.change_state(node.fqn, Transition.TRANSITION_CONFIGURE), node.log()
        assert client.change_state(node.fqn, Transition.TRANSITION_ACTIVATE), node.log()
        answers = client.collect(PersonPoseArray, f'{namespace}/poses', 100)
        diagnostics = client.collect(DiagnosticArray, '/diagnostics', 100)
        image_type, image_topic = ((CompressedImage, f'{namespace}/image/compressed') if transport == 'compressed'
                                   else (Image, f'{namespace}/image'))
        images = client.node.create_publisher(image_type, image_topic, 100)
        boxes = client.node.create_publisher(TrackedDetectionArray, f'{namespace}/detections', 100)
        assert client.wait_for(lambda: client.node.count_subscribers(image_topic) == 1
                               and client.node.count_subscribers(f'{namespace}/detections') == 1, 10)
        bad_images, sec = 0, 100
        make_bad = _bad_compressed if transport == 'compressed' else _bad_raw
        for good in range(GOOD_FRAMES):
            for k in range(BAD_PER_GOOD):
                sec += 1
                if k % 3 == 2:  # bad boxes with a decodable image: processed, boxes rejected
                    boxes.publish(_stamped(_bad_detections(rng, k), sec))
                    images.publish(_stamped(_good(transport, rng), sec))
                else:
                    images.publish(_stamped(make_bad(rng, k + good), sec))
                    bad_images += 1
            sec += 1
            boxes.publish(_stamped(_good_detections(), sec))
            images.publish(_stamped(_good(transport, rng), sec))
            assert client.wait_for(lambda s=sec: any(a.header.stamp.sec == s for a in answers), 20), (
                f'good frame {good} (stamp {sec}) was not answered\n{node.log()[-3000:]}')
            assert next(a for a in answers if a.header.stamp.sec == sec).poses, 'the good boxes gave no poses'
        assert node.alive() and client.get_state(node.fqn) == 'active'
        time.sleep(0.5)
        assert client.wait_for(lambda: diagnostics_of(diagnostics, node.fqn).get('bad_images') == str(bad_images),
                               10), diagnostics_of(diagnostics, node.fqn)
        values = diagnostics_of(diagnostics, node.fqn)
        assert int(values['pipeline_rejected_detections']) > 0 and values['pipeline_errors'] == '0'
    finally:
        client.close()
        exit_code = node.stop()
    assert exit_code == 0 and 'Traceback' not in node.log(), node.log()[-3000:]
