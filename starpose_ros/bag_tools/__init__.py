"""The offline rosbag2 tools: replay, conversion, labelling, reports (rosbags, no rclpy)."""
