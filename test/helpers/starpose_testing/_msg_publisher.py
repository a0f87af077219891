"""Child process of test_msgs_roundtrip: publishes one filled instance of each message."""
import sys
import time

import rclpy
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

from starpose_testing.msg_samples import SAMPLE_BUILDERS


def main() -> None:
    rclpy.init()
    node = rclpy.create_node('starpose_msgs_publisher')
    qos = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                     durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    publishers = {name: node.create_publisher(build().__class__, f'roundtrip/{name}', qos)
                  for name, build in SAMPLE_BUILDERS.items()}
    for name, build in SAMPLE_BUILDERS.items():
        publishers[name].publish(build())
    deadline = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline:  # stay alive so late subscribers get the latched samples
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == '__main__':
    main()
