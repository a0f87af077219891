"""StarPose ROS 2 package: the lifecycle node and its ROS-free core."""
