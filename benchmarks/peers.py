"""The peer a CPU user would pick instead of StarPose: MediaPipe BlazePose, as harness cases.

This file imports only numpy and OpenCV at its top, so that its cases can run in the teacher's
own venv (`.venv-teacher`, `bash scripts/setup_teacher.sh`: MediaPipe needs protobuf < 5).
"""
from __future__ import annotations

import os

import cv2
import numpy as np

PEER_INPUT = 256  # the square crop BlazePose gets, as `starpose_ros.bag_tools.label` gives it
VTEST_FRAME = 160  # a test-split frame of vtest.avi with several people


def blazepose_call(threads: int, image: str, box: list[float], static: bool = True):
    """One person's pose from a full-resolution frame: square crop around `box`, then BlazePose.

    MediaPipe's legacy solution has no thread setting, so the process is pinned to `threads`
    CPUs; static mode runs the person detector on every call (as the labeler does), tracking mode
    reuses the previous landmarks. Fails when BlazePose finds nobody (the time would not be a
    person's).
    """
    from mediapipe.python.solutions import pose as mp_pose

    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    frame = cv2.cvtColor(cv2.imread(image), cv2.COLOR_BGR2RGB)
    x, y, w, h = box
    scale = PEER_INPUT / (1.25 * max(w, h))
    to_crop = np.array([[scale, 0, PEER_INPUT / 2 - scale * (x + w / 2)],
                        [0, scale, PEER_INPUT / 2 - scale * (y + h / 2)]])
    pose = mp_pose.Pose(static_image_mode=static, model_complexity=1, enable_segmentation=False)

    def call():
        crop = cv2.warpAffine(frame, to_crop, (PEER_INPUT, PEER_INPUT), flags=cv2.INTER_LINEAR)
        return pose.process(crop).pose_landmarks

    if call() is None:
        raise RuntimeError(f'BlazePose finds nobody in box {box} of {image}')
    return call


def peer_input(folder, video, labels) -> tuple[str, list[float]] | None:
    """A full-resolution vtest frame (PNG in `folder`) and its tallest labelled person's box.

    `labels` is the x4 fixture's PoseTrack file (boxes in x4 pixels); None without the video.
    """
    import json

    if not os.path.isfile(video):
        return None
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, VTEST_FRAME)
    ok, bgr = capture.read()
    capture.release()
    with open(labels) as file:
        document = json.load(file)
    image_ids = {im['id'] for im in document['images'] if im['file_name'].endswith(f'{VTEST_FRAME:06d}.png')}
    boxes = [a['bbox'] for a in document['annotations'] if a['image_id'] in image_ids]
    if not ok or not boxes:
        return None
    path = os.path.join(folder, f'vtest_{VTEST_FRAME}.png')
    cv2.imwrite(path, bgr)
    return path, [4.0 * v for v in max(boxes, key=lambda b: b[3])]
