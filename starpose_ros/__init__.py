"""StarPose ROS 2 package: the lifecycle node, its ROS-free core (`core/`) and the offline bag tools (`bag_tools/`)."""
