"""The other input modes: CompressedImage on `image/compressed`, and the built-in HOG detector.

A camera alone (no detection topic) must give pose arrays: one per image, with its header.
"""
import time

import cv2
import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage

from starpose_msgs.msg import PersonPoseArray
from starpose_testing.node_harness import node_in_process, tiny_onnx_model

pytestmark = pytest.mark.ros


def _person_picture() -> np.ndarray:
    """A 320x240 RGB image with one large upright figure (a target HOG can fire on, or not)."""
    image = np.full((240, 320, 3), 200, dtype=np.uint8)
    cv2.circle(image, (160, 50), 14, (60, 40, 30), -1)
    cv2.rectangle(image, (145, 65), (175, 140), (40, 60, 150), -1)
    cv2.line(image, (150, 140), (140, 215), (30, 30, 30), 9)
    cv2.line(image, (170, 140), (180, 215), (30, 30, 30), 9)
    return image


def test_compressed_images_with_the_hog_detector_give_one_pose_array_per_image(rclpy_context, request):
    model = tiny_onnx_model(request.config)
    parameters = [Parameter('model_path', value=str(model)), Parameter('image_transport', value='compressed'),
                  Parameter('detector', value='hog')]
    with node_in_process(rclpy_context, '/t_inputs', parameters, 'compressed_camera') as (node, peer):
        answers = []
        peer.create_subscription(PersonPoseArray, 'poses', answers.append, 10)
        camera = peer.create_publisher(CompressedImage, 'image/compressed', qos_profile_sensor_data)
        assert node.trigger_configure().name == 'SUCCESS' and node.trigger_activate().name == 'SUCCESS'
        assert node.count_subscribers('/t_inputs/detections') == 0  # images only: no detection topic
        ok, jpeg = cv2.imencode('.jpg', cv2.cvtColor(_person_picture(), cv2.COLOR_RGB2BGR))
        assert ok
        sent = []
        for index in range(3):
            msg = CompressedImage(format='jpeg', data=jpeg.tobytes())
            msg.header.frame_id = 'camera_optical'
            msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + index, 0
            deadline = time.monotonic() + 10
            while not any(a.header.stamp == msg.header.stamp for a in answers) and time.monotonic() < deadline:
                camera.publish(msg)  # best effort: offered again until answered
                time.sleep(0.3)
            sent.append(msg.header)
        for header in sent:
            matching = [a for a in answers if a.header == header]
            assert len(matching) == 1, header
        diagnostics = node.diagnostics_values()
        assert diagnostics['bad_images'] == 0 and diagnostics['frames_out'] == 3
