"""ROS messages <-> core types: detections (both layouts, class filter), pose arrays, markers, headers.

vision_msgs is not installable here, so its 4.x layout (Detection2D.id, bbox.center.position,
results[].hypothesis.class_id/score) is built from plain objects with exactly those fields.
"""
import math
from types import SimpleNamespace

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from visualization_msgs.msg import Marker

from starpose_model.keypoints import SKELETON_EDGES
from starpose_msgs.msg import TrackedDetection, TrackedDetectionArray
from starpose_ros import ros_conversions as conv
from starpose_ros.core.messages import tracked_detections, vision_detections
from starpose_ros.core.person_filter import ANY_CLASS, PersonFilter
from starpose_ros.core.types import FrameResult, PersonResult

pytestmark = pytest.mark.ros



def _vision_detection(det_id, cx, cy, w, h, hypotheses):
    results = [SimpleNamespace(hypothesis=SimpleNamespace(class_id=c, score=s)) for c, s in hypotheses]
    bbox = SimpleNamespace(center=SimpleNamespace(position=SimpleNamespace(x=cx, y=cy), theta=0.0), size_x=w, size_y=h)
    return SimpleNamespace(id=det_id, bbox=bbox, results=results)


def test_vision_msgs_4x_detections_keep_ids_and_filter_classes():
    msg = SimpleNamespace(detections=[
        _vision_detection('7', 50.0, 100.0, 20.0, 60.0, [('person', 0.8)]),
        _vision_detection('', 10.0, 10.0, 4.0, 4.0, [('bicycle', 0.99)]),
        _vision_detection('', 200.0, 100.0, 30.0, 90.0, [('car', 0.9), ('0', 0.6)]),
        _vision_detection('', 300.0, 100.0, 30.0, 90.0, []),  # no class: kept, score 1
        _vision_detection('9', 300.0, 100.0, 30.0, 90.0, [('person', 0.1)]),  # below min score
    ])
    detections, filtered = vision_detections(msg, PersonFilter(min_score=0.2))
    assert [d.track_id for d in detections] == ['7', None, None] and filtered == 2
    assert detections[0].box_xywh == (40.0, 70.0, 20.0, 60.0)
    assert [d.score for d in detections] == [0.8, 0.6, 1.0]
    everyone, filtered = vision_detections(msg, ANY_CLASS)
    assert len(everyone) == 5 and filtered == 0


def test_tracked_detections_pass_bad_boxes_on_for_the_pipeline_to_count():
    msg = TrackedDetectionArray(detections=[
        TrackedDetection(id='', class_id='person', score=0.9, center_x=math.nan, center_y=5.0, size_x=1.0, size_y=1.0),
        TrackedDetection(id='3', class_id='person', score=0.9, center_x=5.0, center_y=5.0, size_x=0.0, size_y=0.0),
        TrackedDetection(id='4', class_id='dog', score=0.9, center_x=5.0, center_y=5.0, size_x=2.0, size_y=2.0),
    ])
    detections, filtered = tracked_detections(msg, PersonFilter())
    assert [d.track_id for d in detections] == [None, '3'] and filtered == 1
    assert math.isnan(detections[0].box_xywh[0]) and detections[1].box_xywh == (5.0, 5.0, 0.0, 0.0)


def _result(keypoint_scores) -> FrameResult:
    keypoints = np.zeros((17, 3), dtype=np.float32)
    keypoints[:, 0], keypoints[:, 1], keypoints[:, 2] = np.arange(17) * 4.0 + 100, 200.0, keypoint_scores
    person = PersonResult(track_id='12', box_xywh=np.array([90.0, 150.0, 80.0, 120.0]), keypoints=keypoints,
                          score=float(np.mean(keypoint_scores)), sr_crop=np.zeros((256, 192, 3), np.uint8),
                          crop_keypoints=keypoints, image_to_crop=np.array([[2.0, 0, -20], [0, 2.0, -40]]))
    return FrameResult(stamp_ns=1_700_000_000_123_456_789, frame_id='cam', persons=[person], timings_ms={},
                       keypoint_layout='posetrack', image_rgb=np.zeros((480, 640, 3), np.uint8))


def test_pose_array_and_crops_carry_the_input_header_and_17_keypoints():
    result = _result(np.full(17, 0.9))
    poses = conv.pose_array_msg(result)
    assert (poses.header.stamp.sec, poses.header.stamp.nanosec, poses.header.frame_id) == (1_700_000_000, 123_456_789,
                                                                                          'cam')
    assert poses.keypoint_layout == 'posetrack' and poses.poses[0].track_id == '12'
    assert [round(k.x) for k in poses.poses[0].keypoints] == list(range(100, 168, 4))
    crops = conv.sr_crops_msg(result)
    assert crops.header == poses.header and crops.crops[0].image.header == poses.header
    assert list(crops.crops[0].crop_to_image) == [0.5, 0, 10, 0, 0.5, 20]


def test_markers_draw_only_confident_bones_in_the_camera_frame():
    scores = np.full(17, 0.9)
    scores[[9, 10]] = 0.1  # wrists below the threshold: their bones are left out
    markers = conv.skeleton_markers_msg(_result(scores), (640, 480), min_keypoint_score=0.3, pixel_size_m=0.01,
                                        distance_m=2.0, lifetime_s=0.5)
    delete_all, bones, joints, label = markers.markers
    assert delete_all.action == Marker.DELETEALL
    assert bones.type == Marker.LINE_LIST and bones.header.frame_id == 'cam'
    confident_edges = [e for e in SKELETON_EDGES['posetrack'] if 9 not in e and 10 not in e]
    assert len(bones.points) == 2 * len(confident_edges)
    assert len(joints.points) == 15 and label.text == '12'
    assert (bones.lifetime.sec, bones.lifetime.nanosec) == (0, 500_000_000)
    nose = joints.points[0]
    assert (nose.x, nose.y, nose.z) == pytest.approx(((100 - 320) * 0.01, (200 - 240) * 0.01, 2.0))


def test_diagnostics_message_formats_values():
    stamp = conv.make_header(5_000_000_001, '').stamp
    array = conv.diagnostics_msg(stamp, 'node: pose pipeline', '/ns/node', DiagnosticStatus.WARN, 'slow',
                                 {'latency_p50_ms': 12.345, 'tracks': 3})
    status = array.status[0]
    assert status.level == DiagnosticStatus.WARN and status.hardware_id == '/ns/node'
    assert {kv.key: kv.value for kv in status.values} == {'latency_p50_ms': '12.35', 'tracks': '3'}
