"""Reading a recorded bag for the replay: rosbags' AnyReader, read errors as one BagEvalError.

Reads rosbag2 directories (sqlite3 or mcap) and bare `.mcap` files without a ROS install; bags
whose vision_msgs detections carry no definitions get the 4.x ones registered here.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from starpose_ros import bagio

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


class BagSource:
    """A rosbag2 directory or `.mcap`/`.db3` file opened with rosbags' AnyReader."""

    def __init__(self, path, typestore=None):
        from rosbags.highlevel import AnyReader, AnyReaderError

        self.path = Path(path)
        if not self.path.exists():
            raise BagEvalError(f'bag not found: {self.path}')
        if self.path.is_dir() and not (self.path / 'metadata.yaml').is_file():
            raise BagEvalError(f'{self.path} is not a rosbag2 directory (no metadata.yaml)')
        self.typestore = typestore or eval_typestore()
        try:
            self.reader = AnyReader([self.path], default_typestore=self.typestore)
            self.reader.open()
        except (AnyReaderError, FileNotFoundError) as error:
            raise BagEvalError(f'cannot open bag {self.path}: {error}') from error
        except Exception as error:  # storage plugins raise their own types on truncated/corrupt files
            raise BagEvalError(f'cannot open bag {self.path} (truncated or corrupt?): {error}') from error
        self.topics = {c.topic: c.msgtype for c in self.reader.connections}
        self.counts = {}
        for connection in self.reader.connections:
            self.counts[connection.topic] = self.counts.get(connection.topic, 0) + connection.msgcount

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

    def messages(self, topics: list[str]) -> Iterator[tuple[str, str, int, object]]:
        """(topic, type, bag time, message) in bag-time order; read errors become BagEvalError."""
        connections = [c for c in self.reader.connections if c.topic in topics]
        count = 0
        try:
            for connection, timestamp, raw in self.reader.messages(connections=connections):
                try:
                    msg = self.reader.deserialize(raw, connection.msgtype)
                except Exception as error:
                    raise BagEvalError(f'{self.path}: cannot decode message {count} on {connection.topic} '
                                       f'({connection.msgtype}): {error}') from error
                count += 1
                yield connection.topic, connection.msgtype, timestamp, msg
        except BagEvalError:
            raise
        except Exception as error:  # truncated chunks, bad sqlite pages, ...
            raise BagEvalError(f'{self.path}: reading failed after {count} message(s) on {topics} '
                               f'(truncated or corrupt bag?): {error}') from error

    def close(self) -> None:
        """Close the reader."""
        self.reader.close()
