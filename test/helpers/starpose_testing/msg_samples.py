"""Filled sample instances of every starpose_msgs message, built field by field by name."""
import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from starpose_msgs.msg import (
    Keypoint2D,
    PersonPose,
    PersonPoseArray,
    SuperResolvedCrop,
    SuperResolvedCropArray,
    TrackedDetection,
    TrackedDetectionArray,
)


def _header() -> Header:
    header = Header(frame_id='camera_optical')
    header.stamp.sec = 1_700_000_000
    header.stamp.nanosec = 123_456_789
    return header


def person_pose() -> PersonPose:
    pose = PersonPose(track_id='7', bbox_x=10.5, bbox_y=20.25, bbox_width=30.0, bbox_height=80.0, score=0.75)
    pose.keypoints = [Keypoint2D(x=float(i), y=float(2 * i), score=i / 16.0) for i in range(17)]
    return pose


def person_pose_array() -> PersonPoseArray:
    return PersonPoseArray(header=_header(), keypoint_layout='posetrack', poses=[person_pose(), person_pose()])


def tracked_detection_array() -> TrackedDetectionArray:
    detection = TrackedDetection(id='', class_id='person', score=0.9, center_x=100.0, center_y=120.0,
                                 size_x=24.0, size_y=64.0)
    return TrackedDetectionArray(header=_header(), detections=[detection])


def super_resolved_crop_array() -> SuperResolvedCropArray:
    pixels = np.arange(256 * 192 * 3, dtype=np.uint32).astype(np.uint8)
    image = Image(header=_header(), height=256, width=192, encoding='rgb8', is_bigendian=0, step=192 * 3,
                  data=pixels.tobytes())
    crop = SuperResolvedCrop(track_id='7', image=image, crop_to_image=[0.5, 0.0, 10.0, 0.0, 0.5, 20.0])
    return SuperResolvedCropArray(header=_header(), crops=[crop])


SAMPLE_BUILDERS = {
    'person_pose_array': person_pose_array,
    'tracked_detection_array': tracked_detection_array,
    'super_resolved_crop_array': super_resolved_crop_array,
}
