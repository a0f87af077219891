"""Every starpose_msgs message crosses a real Fast DDS link between two processes intact."""
import subprocess
import sys
import time

import pytest
import rclpy
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

from starpose_testing.msg_samples import SAMPLE_BUILDERS
from starpose_testing.paths import REPO_ROOT

pytestmark = pytest.mark.ros


def as_plain(value):
    """Recursively turn a ROS message into dicts/lists so two messages compare field by field."""
    if hasattr(value, 'get_fields_and_field_types'):
        return {field: as_plain(getattr(value, field)) for field in value.get_fields_and_field_types()}
    if isinstance(value, (list, tuple)) or hasattr(value, 'tolist'):
        return [as_plain(item) for item in (value.tolist() if hasattr(value, 'tolist') else value)]
    return value


def test_every_message_roundtrips_between_processes(rclpy_context):
    publisher = subprocess.Popen([sys.executable, '-m', 'starpose_testing._msg_publisher', '20'], cwd=REPO_ROOT)
    node = rclpy.create_node('starpose_msgs_subscriber', context=rclpy_context)
    executor = rclpy.executors.SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    qos = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                     durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    received = {}
    for name, build in SAMPLE_BUILDERS.items():
        node.create_subscription(build().__class__, f'roundtrip/{name}',
                                 lambda msg, name=name: received.setdefault(name, msg), qos)
    try:
        deadline = time.monotonic() + 20.0
        while len(received) < len(SAMPLE_BUILDERS) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    finally:
        publisher.terminate()
        publisher.wait(timeout=10)
        node.destroy_node()

    assert set(received) == set(SAMPLE_BUILDERS), f'missing: {set(SAMPLE_BUILDERS) - set(received)}'
    for name, build in SAMPLE_BUILDERS.items():
        assert as_plain(received[name]) == as_plain(build()), name


def test_person_pose_has_fixed_17_keypoints():
    from starpose_msgs.msg import PersonPose

    pose = PersonPose()
    assert len(pose.keypoints) == 17
    assert PersonPose.get_fields_and_field_types()['keypoints'] == 'starpose_msgs/Keypoint2D[17]'
