"""ROS-free core shared by the node and the bag replay (no rclpy imports here)."""
