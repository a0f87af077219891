"""ROS messages <-> the core's plain types, in one place so the node stays about wiring.

Inbound: `sensor_msgs/Image` / `CompressedImage` -> RGB arrays (through the core's codec);
detections go through the core's duck-typed decoders (`core.person_filter`), shared with the bag
replay; `Detection2DArray` is imported here only if vision_msgs is installed. Outbound: a `FrameResult` -> pose
array, SR crops, images, RViz markers; counters -> `diagnostic_msgs`. Every outbound message
carries the input image's header (stamp and frame_id), never the clock's time.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from starpose_model.keypoints import SKELETON_EDGES
from starpose_msgs.msg import (
    Keypoint2D,
    PersonPose,
    PersonPoseArray,
    SuperResolvedCrop,
    SuperResolvedCropArray,
)
from starpose_ros.core import messages
from starpose_ros.core.image_codec import encode_image
from starpose_ros.core.messages import NANOSECONDS
from starpose_ros.core.types import FrameResult

try:  # vision_msgs is optional: the project's own message replaces it where it is absent
    from vision_msgs.msg import Detection2DArray
except ImportError:  # pragma: no cover - depends on the installation
    Detection2DArray = None

# the message classes the core's duck-typed builders (`core.messages`) construct, by rosbags-style name
ROS_TYPES = {'std_msgs/msg/Header': Header, 'builtin_interfaces/msg/Time': Time,
             'starpose_msgs/msg/Keypoint2D': Keypoint2D, 'starpose_msgs/msg/PersonPose': PersonPose,
             'starpose_msgs/msg/PersonPoseArray': PersonPoseArray}


def make_header(stamp_ns: int, frame_id: str) -> Header:
    """Rebuild the input image's header from the core's stamp and frame_id."""
    return messages.make_header(ROS_TYPES, stamp_ns, frame_id)


def pose_array_msg(result: FrameResult) -> PersonPoseArray:
    """One `PersonPose` per person of the frame: track id, box, 17 keypoints in image pixels."""
    return messages.pose_array(ROS_TYPES, result)


def rgb_to_image_msg(rgb: np.ndarray, header: Header, encoding: str = 'rgb8') -> Image:
    """An (H, W, 3) uint8 RGB array as a `sensor_msgs/Image` with the given header."""
    encoded = encode_image(rgb, encoding)
    return Image(header=header, height=encoded.height, width=encoded.width, encoding=encoded.encoding,
                 is_bigendian=encoded.is_bigendian, step=encoded.step, data=encoded.data)


def sr_crops_msg(result: FrameResult) -> SuperResolvedCropArray:
    """The super-resolved crop of every person with its crop -> image affine."""
    header = make_header(result.stamp_ns, result.frame_id)
    crops = [SuperResolvedCrop(track_id=person.track_id, image=rgb_to_image_msg(person.sr_crop, header),
                               crop_to_image=[float(v) for v in np.asarray(person.crop_to_image).reshape(6)])
             for person in result.persons]
    return SuperResolvedCropArray(header=header, crops=crops)


def _color(index: int, alpha: float = 1.0) -> ColorRGBA:
    """A stable, distinct colour per track (golden-ratio hue steps)."""
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = (float(np.clip(abs((hue * 6.0 + shift) % 6.0 - 3.0) - 1.0, 0.0, 1.0)) for shift in (0.0, 4.0, 2.0))
    return ColorRGBA(r=r, g=g, b=b, a=alpha)


def _track_color_index(track_id: str) -> int:
    """Colour index from the track id: numeric ids map directly, others by a stable checksum."""
    return int(track_id) if track_id.isdigit() else sum(track_id.encode()) * 31


def skeleton_markers_msg(result: FrameResult, image_size: tuple[int, int], min_keypoint_score: float,
                         pixel_size_m: float, distance_m: float, lifetime_s: float) -> MarkerArray:
    """RViz markers of every skeleton, as a picture plane in the camera's optical frame.

    Without depth the keypoints cannot be placed metrically, so pixel (u, v) goes to
    x = (u - W/2) * pixel_size_m, y = (v - H/2) * pixel_size_m, z = distance_m in the image's
    frame_id (optical convention: x right, y down, z forward). Each person gets a LINE_LIST
    (bones), a POINTS marker (joints) and a text label with the track id; all expire after
    `lifetime_s`, and a leading DELETEALL clears people that left the frame.
    """
    width, height = image_size
    header = make_header(result.stamp_ns, result.frame_id)
    lifetime = Duration()
    lifetime.sec, lifetime.nanosec = divmod(int(round(lifetime_s * NANOSECONDS)), NANOSECONDS)

    def to_point(u: float, v: float) -> Point:
        return Point(x=(u - width / 2.0) * pixel_size_m, y=(v - height / 2.0) * pixel_size_m, z=distance_m)

    markers = [Marker(header=header, action=Marker.DELETEALL)]
    edges = SKELETON_EDGES[result.keypoint_layout]
    for index, person in enumerate(result.persons):
        color = _color(_track_color_index(person.track_id))
        keypoints = np.asarray(person.keypoints, dtype=np.float64)
        visible = np.isfinite(keypoints).all(axis=1) & (keypoints[:, 2] >= min_keypoint_score)
        common = {'header': header, 'id': index, 'action': Marker.ADD, 'lifetime': lifetime, 'color': color}
        bones = Marker(ns='skeleton', type=Marker.LINE_LIST, **common)
        bones.scale.x = 2.0 * pixel_size_m
        bones.pose.orientation.w = 1.0
        bones.points = [to_point(*keypoints[j, :2]) for a, b in edges if visible[a] and visible[b] for j in (a, b)]
        joints = Marker(ns='joints', type=Marker.POINTS, **common)
        joints.scale.x = joints.scale.y = 4.0 * pixel_size_m
        joints.pose.orientation.w = 1.0
        joints.points = [to_point(*keypoints[j, :2]) for j in np.flatnonzero(visible)]
        x, y, _, _ = (float(v) for v in person.box_xywh)
        label = Marker(ns='track_ids', type=Marker.TEXT_VIEW_FACING, text=person.track_id, **common)
        label.pose.position = to_point(x, y)
        label.pose.orientation.w = 1.0
        label.scale.z = 12.0 * pixel_size_m
        markers.extend([bones, joints, label])
    return MarkerArray(markers=markers)


def diagnostics_msg(stamp: Time, name: str, hardware_id: str, level: bytes, message: str,
                    values: Mapping[str, object]) -> DiagnosticArray:
    """One `DiagnosticStatus` (level: DiagnosticStatus.OK/WARN/ERROR) with key/values as strings."""
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=key, value=_format_value(value)) for key, value in values.items()])
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array


def _format_value(value: object) -> str:
    return f'{value:.2f}' if isinstance(value, float) else str(value)
