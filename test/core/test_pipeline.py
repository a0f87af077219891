"""PosePipeline end to end on the real ONNX Runtime backend (exported tiny model)."""
import numpy as np
import pytest

from starpose_model.crops import box_to_center_scale, crop_affine, invert_affine, warp_crop
from starpose_ros.core.backends import create_backend
from starpose_ros.core.pipeline import PipelineConfig, PosePipeline, hr_crop_affines, sanitize_detections
from starpose_ros.core.types import Detection, FrameInput, invert_affines

FRAME_NS = 40_000_000
RNG = np.random.default_rng(7)
FRAMES = [RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(6)]


def _boxes(k):
    """Two people walking towards each other (no ids: the tracker names them)."""
    return [Detection((100.0 + 5 * k, 120.0, 40.0, 100.0), score=0.9), Detection((400.0 - 5 * k, 200.0, 30.0, 80.0))]


def _run(pipeline, count=6, boxes=_boxes):
    return [pipeline.process(FrameInput(1_000 + k * FRAME_NS, 'camera', FRAMES[k], boxes(k))) for k in range(count)]


def test_results_are_stamped_tracked_and_mapped_to_image_pixels(ort_backend):
    pipeline = PosePipeline(ort_backend, PipelineConfig(draw_overlay=True, draw_mosaic=True))
    results = _run(pipeline)
    for k, result in enumerate(results):
        assert (result.stamp_ns, result.frame_id) == (1_000 + k * FRAME_NS, 'camera')
        assert [p.track_id for p in result.persons] == [p.track_id for p in results[0].persons]
        assert set(result.timings_ms) == {'detect', 'track', 'crop', 'infer', 'decode', 'draw', 'total'}
        assert result.overlay_rgb.shape == (480, 640, 3) and result.mosaic_rgb.shape == (256, 384, 3)
    assert len({p.track_id for p in results[0].persons}) == 2

    # Rebuild the last frame's inputs independently: frames 1..5 cropped with frame 5's boxes.
    info = ort_backend.model_info
    last = results[-1]
    windows = []
    for person in last.persons:
        center, size = box_to_center_scale(person.box_xywh)
        affine = crop_affine(center, size, (info.lr_height, info.lr_width))
        windows.append([warp_crop(FRAMES[k], affine, (info.lr_height, info.lr_width)) for k in range(1, 6)])
    direct = ort_backend.infer(np.asarray(windows, dtype=np.uint8))
    for person, sr_image, hr_keypoints in zip(last.persons, direct.sr_images, direct.keypoints, strict=True):
        center, size = box_to_center_scale(person.box_xywh)
        expected_xy = center + (hr_keypoints[:, :2] - np.array([96.0, 128.0])) * size / np.array([192.0, 256.0])
        np.testing.assert_allclose(person.keypoints[:, :2], expected_xy, atol=1e-3)
        np.testing.assert_array_equal(person.keypoints[:, 2], hr_keypoints[:, 2])
        np.testing.assert_array_equal(person.sr_crop, sr_image)
        np.testing.assert_array_equal(person.crop_keypoints, hr_keypoints)  # as the backend returned them
        np.testing.assert_array_equal(person.image_to_crop, crop_affine(center, size, (256, 192)))
        scored = [j for j in range(17) if info.keypoint_layout != 'posetrack' or j not in (3, 4)]
        assert person.score == pytest.approx(float(hr_keypoints[scored, 2].mean()))


def test_hr_crop_maps_onto_the_padded_box_region_the_lr_crop_covers():
    box = (50.0, 60.0, 30.0, 100.0)
    center, size = box_to_center_scale(box)
    np.testing.assert_allclose(size, [93.75, 125.0])  # aspect 0.75, padding 1.25
    lr_affine = crop_affine(center, size, (64, 48))
    to_image = invert_affines(hr_crop_affines(lr_affine[None], 64))[0]
    np.testing.assert_allclose(to_image, invert_affine(crop_affine(center, size, (256, 192))), atol=1e-9)
    corners = np.array([[0.0, 0.0], [192.0, 256.0], [96.0, 128.0]])
    mapped = corners @ to_image[:, :2].T + to_image[:, 2]
    np.testing.assert_allclose(mapped, [center - size / 2, center + size / 2, center])
    lr_to_image = invert_affine(lr_affine)
    np.testing.assert_allclose(np.array([[0.0, 0.0], [48.0, 64.0]]) @ lr_to_image[:, :2].T + lr_to_image[:, 2],
                               mapped[:2])
    assert invert_affines(hr_crop_affines(np.zeros((0, 2, 3)), 64)).shape == (0, 2, 3)


def test_many_persons_are_chunked_by_max_batch_with_the_same_results(ort_backend):
    crowd = [Detection((20.0 + 120 * i, 100.0, 40.0, 90.0), track_id=f'p{i}') for i in range(5)]
    single = PosePipeline(ort_backend, PipelineConfig(max_batch=16)).process(FrameInput(0, 'c', FRAMES[0], crowd))
    chunked_pipeline = PosePipeline(ort_backend, PipelineConfig(max_batch=2))
    chunked = chunked_pipeline.process(FrameInput(0, 'c', FRAMES[0], crowd))
    assert chunked_pipeline.counters.backend_calls == 3
    assert [p.track_id for p in chunked.persons] == [f'p{i}' for i in range(5)]  # given ids pass through
    for a, b in zip(single.persons, chunked.persons, strict=True):
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)


def test_bad_boxes_are_dropped_or_clipped_and_counted(ort_backend):
    nan, inf = float('nan'), float('inf')
    detections = [Detection((nan, 10.0, 20.0, 40.0)), Detection((10.0, 10.0, 0.0, 40.0)),
                  Detection((700.0, 10.0, 20.0, 40.0)), Detection((10.0, 10.0, inf, 40.0)),
                  Detection((10.0, 10.0, -5.0, 40.0)), Detection((10.0, 10.0, 20.0, 40.0), score=nan),
                  Detection((620.0, -20.0, 60.0, 100.0)), Detection((100.0, 100.0, 30.0, 60.0))]
    pipeline = PosePipeline(ort_backend)
    result = pipeline.process(FrameInput(0, 'c', FRAMES[0], detections))
    assert pipeline.counters.rejected_detections == 6 and pipeline.counters.clipped_detections == 1
    boxes = sorted(tuple(p.box_xywh) for p in result.persons)
    assert boxes == [(100.0, 100.0, 30.0, 60.0), (620.0, 0.0, 20.0, 80.0)]
    assert all(np.isfinite(p.keypoints).all() for p in result.persons)
    empty = pipeline.process(FrameInput(FRAME_NS, 'c', FRAMES[1], [Detection((nan, nan, nan, nan))]))
    assert empty.persons == [] and pipeline.counters.backend_calls == 1
    _, rejected, _ = sanitize_detections([Detection(('a', 1, 2, 3))], 10, 10, 2.0)
    assert rejected == 1


def test_bad_images_raise_clearly_and_the_next_frame_works(ort_backend):
    pipeline = PosePipeline(ort_backend)
    with pytest.raises(ValueError, match='image_rgb'):
        pipeline.process(FrameInput(0, 'c', np.zeros((480, 640), np.uint8), []))
    assert pipeline.process(FrameInput(1, 'c', FRAMES[0], [Detection((10.0, 10.0, 30.0, 60.0))])).persons


def test_processing_is_deterministic_and_restarts_on_backwards_stamps_or_a_new_size(ort_backend):
    first, second = PosePipeline(ort_backend), PosePipeline(ort_backend)
    a, b = _run(first, 3), _run(second, 3)
    for x, y in zip(a, b, strict=True):
        for p, q in zip(x.persons, y.persons, strict=True):
            assert p.track_id == q.track_id
            np.testing.assert_array_equal(p.keypoints, q.keypoints)
    old_ids = {p.track_id for p in a[-1].persons}
    again = first.process(FrameInput(0, 'camera', FRAMES[0], _boxes(0)))
    assert first.counters.stream_restarts == 1 and not old_ids & {p.track_id for p in again.persons}
    rejected_before = first.counters.rejected_detections
    smaller = first.process(FrameInput(FRAME_NS, 'camera', FRAMES[1][:240, :320].copy(), _boxes(1)))
    assert first.counters.stream_restarts == 2 and len(first.windows.frames) == 1
    assert len(smaller.persons) == 1  # the second person is outside
    assert first.counters.rejected_detections == rejected_before + 1


def test_center_target_is_delayed_stamped_with_the_target_frame_and_flushed(tiny_center_checkpoint):
    import torch

    torch.set_num_threads(2)
    with create_backend('torch', tiny_center_checkpoint) as backend:
        assert backend.model_info.target_frame == 'center'
        pipeline = PosePipeline(backend)
        results = _run(pipeline, 4, boxes=lambda k: [Detection((100.0 + 10 * k, 120.0, 40.0, 100.0))])
        assert results[:2] == [None, None]
        assert [r.stamp_ns for r in results[2:]] == [1_000, 1_000 + FRAME_NS]
        np.testing.assert_allclose(results[3].persons[0].box_xywh, [110.0, 120.0, 40.0, 100.0])
        assert results[3].image_rgb is FRAMES[1]
        tail = pipeline.flush()
    assert [r.stamp_ns for r in tail] == [1_000 + 2 * FRAME_NS, 1_000 + 3 * FRAME_NS]
    assert [r.persons[0].box_xywh[0] for r in tail] == [120.0, 130.0]


def test_pipeline_state_stays_bounded_while_ids_churn(ort_backend):
    """A new person id every frame: tracks and window state never exceed the configured bounds."""
    pipeline = PosePipeline(ort_backend, PipelineConfig(max_tracks=4, track_max_age_s=0.1))
    for k in range(30):
        detections = [Detection((20.0 * (k % 25), 100.0, 20.0, 50.0), track_id=f'walker-{k}')]
        result = pipeline.process(FrameInput(k * FRAME_NS, 'c', FRAMES[k % 6], detections))
        assert [p.track_id for p in result.persons] == [f'walker-{k}']
        assert len(pipeline.tracker.tracks) <= 4 and len(pipeline.windows.first_seq) <= 4
        assert len(pipeline.windows.frames) <= ort_backend.model_info.window
    assert set(pipeline.windows.first_seq) == set(pipeline.tracker.tracks)
