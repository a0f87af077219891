"""Issue 6, acceptance 4: the trained demo checkpoint loads in the node and gives sensible poses.

The node (real rclpy, PyTorch backend) is fed frames of a synthetic clip with ground-truth
boxes; its published keypoints are compared with the clip's truth. A randomly initialised
model misses by ~0.4-0.5 box heights (median), the demo model by ~0.03, so the 0.1 bound fails
if the checkpoint's weights are not the ones used.
"""
import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import Image

from starpose_msgs.msg import PersonPoseArray, TrackedDetection, TrackedDetectionArray
from starpose_training.synthetic import ClipRenderer, JointStatus, make_config
from test.conftest import REPO_ROOT
from test.ros.node_harness import node_in_process

pytestmark = pytest.mark.ros

DEMO_CHECKPOINT = REPO_ROOT / 'starpose_ros' / 'assets' / 'starpose_tiny_demo.pt'
FRAMES = range(5, 13)


def _image_msg(rgb: np.ndarray, stamp_sec: int) -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding='rgb8', step=rgb.shape[1] * 3,
                data=rgb.tobytes())
    msg.header.frame_id, msg.header.stamp.sec = 'camera_optical', stamp_sec
    return msg


def _detections_msg(people, header) -> TrackedDetectionArray:
    detections = [TrackedDetection(id=str(p.track_id), class_id='person', score=1.0,
                                   center_x=float(p.bbox_xywh[0] + p.bbox_xywh[2] / 2),
                                   center_y=float(p.bbox_xywh[1] + p.bbox_xywh[3] / 2),
                                   size_x=float(p.bbox_xywh[2]), size_y=float(p.bbox_xywh[3]))
                  for p in people]
    return TrackedDetectionArray(header=header, detections=detections)


def test_demo_checkpoint_runs_in_the_node_with_sensible_poses(rclpy_context):
    assert Path(DEMO_CHECKPOINT).is_file()
    renderer = ClipRenderer(make_config('demo'), seed=3)
    errors = []
    parameters = [Parameter('model_path', value=str(DEMO_CHECKPOINT)), Parameter('backend', value='torch')]
    with node_in_process(rclpy_context, '/t_demo', parameters, 'demo_camera') as (node, peer):
        answers: list[PersonPoseArray] = []
        peer.create_subscription(PersonPoseArray, 'poses', answers.append, 10)
        reliable = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
        camera = peer.create_publisher(Image, 'image', reliable)
        detector = peer.create_publisher(TrackedDetectionArray, 'detections', reliable)
        assert node.trigger_configure().name == 'SUCCESS', 'the demo checkpoint must configure the node'
        assert node.trigger_activate().name == 'SUCCESS'
        for frame in FRAMES:
            rendered = renderer.render(frame)
            people = [p for p in rendered.people if p.annotated]
            image = _image_msg(rendered.image, 1000 + frame)
            detector.publish(_detections_msg(people, image.header))
            camera.publish(image)
            deadline = time.monotonic() + 30
            while not any(a.header.stamp == image.header.stamp for a in answers) and time.monotonic() < deadline:
                time.sleep(0.02)
            answer = next(a for a in answers if a.header.stamp == image.header.stamp)
            assert answer.header.frame_id == 'camera_optical' and answer.keypoint_layout == 'posetrack'
            poses = {pose.track_id: pose for pose in answer.poses}
            assert sorted(poses) == sorted(str(p.track_id) for p in people)
            for person in people:
                keypoints = np.array([[k.x, k.y] for k in poses[str(person.track_id)].keypoints])
                visible = person.status == JointStatus.VISIBLE
                visible[3:5] = False  # PoseTrack never annotates the ears
                errors += list(np.linalg.norm(keypoints[visible] - person.joints[visible], axis=1)
                               / person.bbox_xywh[3])
    assert len(errors) > 100
    assert np.median(errors) < 0.1, f'median keypoint error {np.median(errors):.3f} box heights'
