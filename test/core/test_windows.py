"""Aligned windows: every frame is cropped with the target frame's box; short windows are padded."""
import numpy as np
import pytest

from starpose_model.crops import box_to_center_scale, crop_affine, warp_crop
from starpose_ros.core.types import Detection
from starpose_ros.core.windows import TrackWindows

LR = (64, 48)


def _frames(count, shape=(120, 160)):
    """Distinct textured frames: frame k is noise plus k * 20, so crops reveal which frame they came from."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 100, (*shape, 3), dtype=np.uint8)
    return [base + np.uint8(20 * k) for k in range(count)]


def _expected_crop(image, box):
    center, size = box_to_center_scale(box)
    return warp_crop(image, crop_affine(center, size, LR), LR)


def test_all_frames_use_the_target_frames_box():
    frames = _frames(5)
    windows = TrackWindows(5, target_index=4, lr_hw=LR)
    for k, image in enumerate(frames):  # the person moves right by 6 px per frame
        windows.push(k, 'cam', image, [Detection((20.0 + 6 * k, 30.0, 20.0, 50.0), 'a')])
    target = windows.frames[-1]
    batch, affines = windows.crop(target, target.detections)
    assert batch.shape == (1, 5, *LR, 3)
    target_box = target.detections[0].box_xywh
    for slot, image in enumerate(frames):
        np.testing.assert_array_equal(batch[0, slot], _expected_crop(image, target_box))
    own_box_crop = _expected_crop(frames[0], (20.0, 30.0, 20.0, 50.0))
    assert not np.array_equal(batch[0, 0], own_box_crop)
    center, size = box_to_center_scale(target_box)
    np.testing.assert_allclose(affines[0], crop_affine(center, size, LR))


def test_a_new_track_is_padded_with_its_oldest_frame():
    frames = _frames(6)
    windows = TrackWindows(5, target_index=4, lr_hw=LR)
    for k, image in enumerate(frames):
        people = [Detection((10.0, 10.0, 30.0, 60.0), 'old')]
        if k >= 3:
            people.append(Detection((90.0, 20.0, 30.0, 60.0), 'new'))
        windows.push(k, 'cam', image, people)
    assert windows.window_seqs('new', 5) == [3, 3, 3, 4, 5]
    assert windows.window_seqs('old', 5) == [1, 2, 3, 4, 5]  # older frames left the ring
    target = windows.frames[-1]
    batch, _ = windows.crop(target, target.detections)
    box = target.detections[1].box_xywh
    for slot, seq in enumerate([3, 3, 3, 4, 5]):
        np.testing.assert_array_equal(batch[1, slot], _expected_crop(frames[seq], box))


def test_center_target_and_flush_padding_repeat_the_edges():
    windows = TrackWindows(5, target_index=2, lr_hw=LR)
    for k, image in enumerate(_frames(5)):
        windows.push(k, 'cam', image, [Detection((10.0, 10.0, 30.0, 60.0), 'a')])
    assert windows.delay == 2
    assert windows.window_seqs('a', 2) == [0, 1, 2, 3, 4]
    assert windows.window_seqs('a', 3) == [1, 2, 3, 4, 4]
    assert windows.window_seqs('a', 4) == [2, 3, 4, 4, 4]
    assert windows.window_seqs('a', 0) == [0, 0, 0, 1, 2]


def test_memory_is_the_ring_plus_one_integer_per_track():
    windows = TrackWindows(5, target_index=4, lr_hw=LR)
    image = _frames(1)[0]
    for k in range(200):
        windows.push(k, 'cam', image, [Detection((10.0, 10.0, 30.0, 60.0), f'id{k}')])
        windows.forget([f'id{k - 3}'])
    assert len(windows.frames) == 5 and len(windows.first_seq) == 3


@pytest.mark.parametrize('box,factor', [((200.0, 150.0, 200.0, 400.0), 8), ((250.0, 200.0, 90.0, 160.0), 4)])
def test_large_people_are_supersampled_at_the_same_place_without_aliasing(box, factor):
    """A person shrunk >= 3x is warped at f x the LR size and area-averaged: same geometry, no moire.

    A smooth blob's centroid must land where the crop affine sends its centre, and a one-pixel
    checkerboard must come out as flat grey (plain bilinear sampling turns it into a moire).
    """
    center, size = box_to_center_scale(box)
    assert min(8, int(np.ceil(size[1] / LR[0]))) == factor
    blob_xy = np.array([box[0] + 0.37 * box[2], box[1] + 0.61 * box[3]])
    yy, xx = np.mgrid[0:720, 0:640].astype(np.float64)
    blob = 250.0 * np.exp(-((xx - blob_xy[0]) ** 2 + (yy - blob_xy[1]) ** 2) / (2 * 25.0 ** 2))
    windows = TrackWindows(1, target_index=0, lr_hw=LR)
    target = windows.push(0, 'cam', np.repeat(blob[..., None], 3, axis=2).astype(np.uint8), [Detection(box, 'big')])
    batch, affines = windows.crop(target, target.detections)
    crop = batch[0, 0, :, :, 0].astype(np.float64)
    cy, cx = np.mgrid[0:LR[0], 0:LR[1]]
    centroid = np.array([(crop * cx).sum(), (crop * cy).sum()]) / crop.sum()
    np.testing.assert_allclose(centroid, affines[0][:, :2] @ blob_xy + affines[0][:, 2], atol=0.08)

    checkerboard = np.repeat((((xx + yy) % 2) * 255).astype(np.uint8)[..., None], 3, axis=2)
    target = windows.push(1, 'cam', checkerboard, [Detection(box, 'big')])
    batch, _ = windows.crop(target, target.detections)
    inside = batch[0, 0, 8:-8, 8:-8, 0].astype(np.float64)
    plain = _expected_crop(checkerboard, box)[8:-8, 8:-8, 0].astype(np.float64)
    assert inside.std() < 12 and abs(inside.mean() - 127.5) < 10
    assert plain.std() > 3 * inside.std()
