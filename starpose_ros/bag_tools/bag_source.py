"""Reading a recorded bag for the replay: `bagio.BagReader`, read errors as one BagEvalError.

Reads rosbag2 directories (sqlite3 or mcap) and bare `.mcap` files without a ROS install; bags
whose vision_msgs detections carry no definitions get the 4.x ones registered here.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from starpose_ros.bag_tools import bagio

IMAGE_TYPES = (bagio.IMAGE, bagio.COMPRESSED_IMAGE)
VISION_DETECTIONS = 'vision_msgs/msg/Detection2DArray'
DETECTION_TYPES = (bagio.DETECTIONS, VISION_DETECTIONS)

# vision_msgs 4.x (Humble and newer), registered when a bag's detections use it but carry no definitions.
VISION_MSGS = {
    'vision_msgs/msg/Point2D': 'float64 x\nfloat64 y\n',
    'vision_msgs/msg/Pose2D': 'vision_msgs/Point2D position\nfloat64 theta\n',
    'vision_msgs/msg/BoundingBox2D': 'vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n',
    'vision_msgs/msg/ObjectHypothesis': 'string class_id\nfloat64 score\n',
    'vision_msgs/msg/ObjectHypothesisWithPose': 'vision_msgs/ObjectHypothesis hypothesis\n'
                                                'geometry_msgs/PoseWithCovariance pose\n',
    'vision_msgs/msg/Detection2D': 'std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n'
                                   'vision_msgs/BoundingBox2D bbox\nstring id\n',
    'vision_msgs/msg/Detection2DArray': 'std_msgs/Header header\nvision_msgs/Detection2D[] detections\n',
}


class BagEvalError(RuntimeError):
    """The evaluation cannot go on; the message names the bag, topic, type or frame at fault."""


def eval_typestore():
    """starpose_msgs + the distro's standard messages + vision_msgs 4.x definitions."""
    from rosbags.typesys import get_types_from_msg

    typestore = bagio.starpose_typestore()
    types = {}
    for name, text in VISION_MSGS.items():
        types.update(get_types_from_msg(text, name))
    typestore.register(types)
    return typestore


class BagSource(bagio.BagReader):
    """The replay's bag: bagio's reader with the vision_msgs 4.x types, its errors as BagEvalError."""

    def __init__(self, path, typestore=None):
        typestore = typestore or eval_typestore()
        try:
            super().__init__(path, typestore)
        except bagio.BagIOError as error:
            raise BagEvalError(str(error)) from error

    def image_rate(self, topic: str) -> float:
        """Messages per second of a topic over the bag's duration (1..120; 25 when it cannot be told)."""
        count, duration = self.counts.get(topic, 0), self.reader.end_time - self.reader.start_time
        return float(np.clip((count - 1) * 1e9 / duration, 1.0, 120.0)) if count > 1 and duration > 0 else 25.0

    def require(self, topic: str, allowed: tuple[str, ...], what: str) -> str:
        """The topic's message type, or BagEvalError naming what the bag has instead."""
        if topic not in self.topics:
            listing = ', '.join(f'{t} [{m}]' for t, m in sorted(self.topics.items())) or 'none'
            raise BagEvalError(f'{self.path}: no {what} topic {topic!r}; the bag has: {listing}')
        msgtype = self.topics[topic]
        if msgtype not in allowed:
            raise BagEvalError(f'{self.path}: {what} topic {topic} carries {msgtype}; expected one of {list(allowed)}')
        return msgtype

    def messages(self, topics: list[str]) -> Iterator[bagio.BagMessage]:
        """(topic, type, bag time, message) in bag-time order; read errors become BagEvalError."""
        try:
            yield from super().messages(topics)
        except bagio.BagIOError as error:
            raise BagEvalError(str(error)) from error
