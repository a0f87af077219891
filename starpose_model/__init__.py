"""STAR-Pose network in pure PyTorch (no ROS)."""
