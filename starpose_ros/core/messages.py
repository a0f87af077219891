"""Message fields <-> the core's types, duck-typed: rclpy messages and rosbags messages alike.

Both kinds of message have the same field names, so one decoder and one builder serve the live
node (`ros_conversions`) and the bag tools (`bagio`, `bag_eval`); builders take the message
classes as a name -> class mapping (rosbags' `typestore.types`, or the node's imported classes).
Nothing here imports a ROS package.
"""
from __future__ import annotations

from collections.abc import Mapping

from .person_filter import PersonFilter
from .types import Detection, FrameResult

NANOSECONDS = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """A `builtin_interfaces/Time` as integer nanoseconds (the core's stamp type)."""
    return int(stamp.sec) * NANOSECONDS + int(stamp.nanosec)


def header_stamp_ns(msg) -> int:
    """Integer nanoseconds of a message's header stamp."""
    return stamp_to_ns(msg.header.stamp)


def make_header(types: Mapping[str, type], stamp_ns: int, frame_id: str):
    """A std_msgs/Header with the stamp split into seconds and nanoseconds."""
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f'header stamp must be >= 0 ns, got {stamp_ns}')
    seconds, nanoseconds = divmod(stamp_ns, NANOSECONDS)
    stamp = types['builtin_interfaces/msg/Time'](sec=seconds, nanosec=nanoseconds)
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id=str(frame_id))


def pose_array(types: Mapping[str, type], result: FrameResult):
    """starpose_msgs/PersonPoseArray of a result: per person track id, box, 17 keypoints in image pixels."""
    poses = []
    for person in result.persons:
        x, y, w, h = (float(v) for v in person.box_xywh)
        keypoints = [types['starpose_msgs/msg/Keypoint2D'](x=float(kx), y=float(ky), score=float(ks))
                     for kx, ky, ks in person.keypoints]
        poses.append(types['starpose_msgs/msg/PersonPose'](
            track_id=str(person.track_id), bbox_x=x, bbox_y=y, bbox_width=w, bbox_height=h,
            score=float(person.score), keypoints=keypoints))
    return types['starpose_msgs/msg/PersonPoseArray'](
        header=make_header(types, result.stamp_ns, result.frame_id), keypoint_layout=result.keypoint_layout,
        poses=poses)


def _box(center_x: float, center_y: float, size_x: float, size_y: float) -> tuple[float, float, float, float]:
    return center_x - size_x / 2.0, center_y - size_y / 2.0, size_x, size_y


def tracked_detections(msg, person_filter: PersonFilter) -> tuple[list[Detection], int]:
    """(person detections, number filtered out) of a `starpose_msgs/TrackedDetectionArray`.

    An empty id means "not tracked". Boxes pass unchecked (NaN, zero size, off the image): the
    pipeline rejects and counts them, so a bad box shows in diagnostics instead of vanishing here.
    """
    kept = []
    for det in msg.detections:
        score = person_filter.person_score([(det.class_id, float(det.score))], float(det.score))
        if score is not None:
            kept.append(Detection(_box(det.center_x, det.center_y, det.size_x, det.size_y), det.id or None, score))
    return kept, len(msg.detections) - len(kept)


def vision_detections(msg, person_filter: PersonFilter) -> tuple[list[Detection], int]:
    """(person detections, number filtered out) of a vision_msgs 4.x `Detection2DArray`.

    `Detection2D.id` is the track id; the score is the best person hypothesis (1.0 without any).
    """
    kept = []
    for det in msg.detections:
        hypotheses = [(r.hypothesis.class_id, float(r.hypothesis.score)) for r in det.results]
        score = person_filter.person_score(hypotheses, 1.0)
        if score is not None:
            center = det.bbox.center.position
            kept.append(Detection(_box(center.x, center.y, det.bbox.size_x, det.bbox.size_y), det.id or None, score))
    return kept, len(msg.detections) - len(kept)
