"""Launch the StarPose lifecycle node on a camera, optionally with RViz.

    ros2 launch starpose_ros pose.launch.py model_path:=/path/to/starpose.onnx \
        image:=/camera/image_raw detections:=/yolo/detections

With autostart:=true (default) the launch drives the node through configure and activate.
The launch sets FASTDDS_DEFAULT_PROFILES_FILE to the installed Fast DDS profile (unless it is set already) for the node
(and RViz); a camera driver started elsewhere needs the same variable (docs/dds.md).
"""
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
)
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.launch_description import LaunchDescription
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

PACKAGE = 'starpose_ros'
EXECUTABLE = 'starpose_node'
PARAMS_FILE = 'config/starpose.yaml'
RVIZ_FILE = 'config/starpose.rviz'
FASTDDS_PROFILE = 'config/fastdds_profile.xml'
# Launch arguments passed to the node as parameters of the same name; an empty value leaves the
# params file's value in force.
NODE_PARAMETER_ARGUMENTS = ('model_path', 'backend', 'detector')


def _lifecycle_node(context):
    """The node with the launch arguments' parameter overrides, and the autostart transitions."""
    overrides = {name: LaunchConfiguration(name).perform(context) for name in NODE_PARAMETER_ARGUMENTS}
    node = LifecycleNode(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=LaunchConfiguration('node_name'),
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('params_file'), {k: v for k, v in overrides.items() if v}],
        remappings=[('image', LaunchConfiguration('image')),
                    ('image/compressed', [LaunchConfiguration('image'), '/compressed']),
                    ('detections', LaunchConfiguration('detections'))],
        output='screen',
        emulate_tty=True,
    )
    autostart = IfCondition(LaunchConfiguration('autostart'))
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE),
                          condition=autostart)
    activate_when_configured = RegisterEventHandler(
        OnStateTransition(target_lifecycle_node=node, start_state='configuring', goal_state='inactive',
                          entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                                                transition_id=Transition.TRANSITION_ACTIVATE))]),
        condition=autostart)
    return [node, activate_when_configured, configure]


def generate_launch_description():
    """Arguments, the Fast DDS profile, the lifecycle node (+ autostart) and optional RViz."""
    share = FindPackageShare(PACKAGE)
    arguments = [
        DeclareLaunchArgument('namespace', default_value='', description='namespace of the node and its topics'),
        DeclareLaunchArgument('node_name', default_value=EXECUTABLE, description='name of the node'),
        DeclareLaunchArgument('params_file', default_value=PathJoinSubstitution([share, PARAMS_FILE]),
                              description='parameters YAML (/**: ros__parameters)'),
        DeclareLaunchArgument('image', default_value='image',
                              description='camera image topic (sensor_msgs/Image; its /compressed for compressed)'),
        DeclareLaunchArgument('detections', default_value='detections',
                              description='person detections topic (vision_msgs/Detection2DArray or '
                                          'starpose_msgs/TrackedDetectionArray)'),
        DeclareLaunchArgument('model_path', default_value='',
                              description='model file; empty = the params file value (empty there: the bundled model)'),
        DeclareLaunchArgument('backend', default_value='',
                              description='auto | onnxruntime | torch | tensorrt; empty = the params file value'),
        DeclareLaunchArgument('detector', default_value='',
                              description='topic | hog | none; empty = the params file value'),
        DeclareLaunchArgument('autostart', default_value='true', description='configure and activate at start'),
        DeclareLaunchArgument('rviz', default_value='false', description='also start RViz with the overlay view'),
    ]
    return LaunchDescription([
        *arguments,
        # the shipped profile unless the user has chosen one (as scripts/env.sh does)
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', EnvironmentVariable(
            'FASTDDS_DEFAULT_PROFILES_FILE', default_value=PathJoinSubstitution([share, FASTDDS_PROFILE]))),
        OpaqueFunction(function=_lifecycle_node),
        Node(package='rviz2', executable='rviz2', arguments=['-d', PathJoinSubstitution([share, RVIZ_FILE])],
             condition=IfCondition(LaunchConfiguration('rviz')), output='screen'),
    ])
