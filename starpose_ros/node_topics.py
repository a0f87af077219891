"""The node's topics: the QoS of each, its lifecycle publishers and its input subscriptions."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from starpose_msgs.msg import PersonPoseArray, SuperResolvedCropArray, TrackedDetectionArray
from starpose_ros import ros_conversions as conv
from starpose_ros.node_parameters import NodeSettings


def _qos(reliability: str, depth: int) -> QoSProfile:
    policy = ReliabilityPolicy.BEST_EFFORT if reliability == 'best_effort' else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy)


def create_publishers(node: LifecycleNode, settings: NodeSettings) -> dict[str, object]:
    """The enabled outputs by name: lifecycle publishers, reliable (results deep, images shallow)."""
    results_qos, images_qos = _qos('reliable', 10), _qos('reliable', 2)
    wanted = {
        'poses': (PersonPoseArray, 'poses', results_qos, True),
        'sr_crops': (SuperResolvedCropArray, 'sr_crops', images_qos, settings.publish_sr_crops),
        'sr_mosaic': (Image, 'sr_mosaic', images_qos, settings.publish_mosaic),
        'overlay': (Image, 'overlay', images_qos, settings.publish_overlay),
        'markers': (MarkerArray, 'markers', results_qos, settings.publish_markers),
        'diagnostics': (DiagnosticArray, '/diagnostics', results_qos, True),
    }
    return {key: node.create_lifecycle_publisher(msg_type, topic, qos)
            for key, (msg_type, topic, qos, enabled) in wanted.items() if enabled}


def create_subscriptions(node: LifecycleNode, settings: NodeSettings, on_image, on_detections) -> list:
    """[image subscription] plus the detections subscription when boxes come from a topic."""
    image_qos = _qos(settings.image_reliability, settings.image_queue_depth)
    if settings.image_transport == 'compressed':
        subscriptions = [node.create_subscription(CompressedImage, 'image/compressed', on_image, image_qos)]
    else:
        subscriptions = [node.create_subscription(Image, 'image', on_image, image_qos)]
    if settings.detector == 'topic':
        msg_type = conv.Detection2DArray if settings.uses_vision_msgs else TrackedDetectionArray
        subscriptions.append(node.create_subscription(
            msg_type, 'detections', on_detections,
            _qos(settings.detections_reliability, settings.detections_queue_depth)))
    return subscriptions
