"""HOG detector, drawing, and the newest-wins hand-over to the worker thread."""
import threading
import time

import numpy as np
import pytest

from starpose_ros.core.detector import HogPersonDetector
from starpose_ros.core.drawing import draw_overlay, sr_mosaic, track_color
from starpose_ros.core.latest import LatestSlot, LatestWorker
from starpose_ros.core.pipeline import PipelineConfig, PosePipeline
from starpose_ros.core.types import FrameInput, PersonResult


@pytest.fixture(scope='module')
def photo():
    """A real photograph with a person (scikit-image's bundled 'astronaut', RGB 512x512)."""
    from skimage import data

    return data.astronaut()


def test_hog_finds_a_person_in_a_photo_and_nobody_in_a_flat_image(photo):
    detector = HogPersonDetector()
    found = detector.detect(photo)
    assert found and all(d.track_id is None for d in found)
    for detection in found:
        x, y, w, h = detection.box_xywh
        assert 0 <= x and 0 <= y and x + w <= 512 and y + h <= 512 and w >= 64 and h >= 128
    assert detector.detect(np.full((480, 640, 3), 127, np.uint8)) == []
    doubled = HogPersonDetector(upscale=2.0).detect(np.full((100, 100, 3), 127, np.uint8))
    assert doubled == []


def test_pipeline_runs_hog_when_a_frame_has_no_detections(ort_backend, photo):
    expected = HogPersonDetector().detect(photo)
    pipeline = PosePipeline(ort_backend, PipelineConfig(detector='hog'))
    result = pipeline.process(FrameInput(0, 'c', photo, None))
    assert len(result.persons) == len(expected) and result.timings_ms['detect'] > 0
    given = pipeline.process(FrameInput(1, 'c', photo, []))  # an explicit empty list: nobody
    assert given.persons == []


def _person(track_id, keypoints):
    return PersonResult(track_id=track_id, box_xywh=np.array([40.0, 30.0, 50.0, 100.0]), keypoints=keypoints,
                        score=1.0, sr_crop=np.full((256, 192, 3), 60, np.uint8), crop_keypoints=keypoints,
                        image_to_crop=np.array([[2.0, 0.0, -20.0], [0.0, 2.0, -40.0]]))


def test_overlay_draws_boxes_and_confident_joints_in_the_track_colour():
    image = np.zeros((200, 160, 3), np.uint8)
    keypoints = np.zeros((17, 3), np.float32)
    keypoints[:, 0], keypoints[:, 1] = 60.0, np.linspace(40, 120, 17)
    keypoints[:, 2] = 0.9
    keypoints[16] = (150.0, 190.0, 0.1)  # below the threshold: not drawn
    overlay = draw_overlay(image, [_person('7', keypoints)], 'coco', min_keypoint_score=0.3)
    assert image.max() == 0  # the input is untouched
    color = np.array(track_color('7'))
    assert (overlay[40, 60] == color).all() and (overlay[30, 40] == color).all()  # a joint, the box corner
    assert overlay[190, 150].max() == 0
    assert track_color('7') == track_color('7') != track_color('8')


def test_mosaic_tiles_every_person():
    keypoints = np.zeros((17, 3), np.float32)
    mosaic = sr_mosaic([_person(str(i), keypoints) for i in range(5)], 'posetrack', columns=4, min_keypoint_score=0.3)
    assert mosaic.shape == (512, 768, 3)
    assert mosaic[300, 100].tolist() == [60, 60, 60] and mosaic[300, 700].max() == 0  # 5th tile, empty 8th
    assert sr_mosaic([], 'coco', 4, 0.3).shape == (256, 192, 3)


def test_mosaic_draws_the_crop_keypoints_on_the_sr_crop():
    person = _person('7', np.zeros((17, 3), np.float32))  # image keypoints at (0, 0), not drawn
    person.crop_keypoints = np.tile(np.float32([100.0, 50.0, 0.9]), (17, 1))
    mosaic = sr_mosaic([person], 'coco', 1, 0.3)
    assert (mosaic[50, 100] == track_color('7')).all() and mosaic[0, 0].tolist() == [60, 60, 60]


def test_latest_slot_keeps_only_the_newest_and_counts_drops():
    slot = LatestSlot()
    assert slot.put(1) is False and slot.put(2) is True and slot.put(3) is True
    assert slot.get(timeout=0) == 3 and slot.dropped == 2
    assert slot.get(timeout=0.01) is None
    slot.put(4)
    slot.close()
    assert slot.get(timeout=0) is None


def test_worker_drops_frames_when_slower_than_the_producer_and_survives_errors():
    handled, errors = [], []
    release = threading.Event()

    def handle(item):
        if item == 'bad':
            raise RuntimeError('broken frame')
        release.wait(2.0)
        handled.append(item)

    worker = LatestWorker(handle, lambda item, error: errors.append((item, str(error))))
    worker.submit('bad')
    time.sleep(0.2)
    worker.submit(0)  # the worker blocks on this one
    time.sleep(0.2)
    for item in range(1, 50):
        worker.submit(item)
    release.set()
    deadline = time.monotonic() + 3.0
    while 49 not in handled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.stop()
    assert errors == [('bad', 'broken frame')]
    assert handled == [0, 49] and worker.dropped == 48
