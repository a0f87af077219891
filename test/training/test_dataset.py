"""PoseTrack windows: sample contract, aligned crops, edge repetition, flip joint swap, determinism."""
import numpy as np
import pytest
import torch

from starpose_model import crops
from starpose_model.keypoints import flip_permutation
from starpose_testing.posetrack_fixtures import frame_image, make_video, write_dataset
from starpose_training.augment import AugmentConfig, WindowAugmentation
from starpose_training.dataset import PoseTrackWindows
from starpose_training.degradation import default_blur_sigma, degrade, lr_size


@pytest.fixture
def dataset_dir(tmp_path):
    write_dataset(tmp_path, [make_video(labeled=(0, 2, 5), people_per_frame=2)])
    return tmp_path


def test_sample_contract_shapes(dataset_dir):
    data = PoseTrackWindows(dataset_dir / 'annotations/val', dataset_dir, window=5, target_frame='center', scale=4)
    assert len(data) == 6  # 3 labeled frames x 2 people
    sample = data[0]
    assert sample['lr_frames'].shape == (5, 3, 64, 48) and sample['lr_frames'].dtype == torch.float32
    assert sample['hr_image'].shape == (3, 256, 192)
    assert 0 <= sample['lr_frames'].min() and sample['lr_frames'].max() <= 1
    assert sample['heatmaps'].shape == (17, 64, 48) and sample['target_weight'].shape == (17,)
    assert sample['keypoints'].shape == (17, 3) and sample['crop_to_image'].shape == (2, 3)
    assert sample['target_weight'][[3, 4]].tolist() == [0, 0] and sample['target_weight'].sum() == 15
    assert sample['track_id'] == 0 and sample['box_xywh'].tolist() == [40, 28, 20, 56]
    data2 = PoseTrackWindows(dataset_dir / 'annotations/val', dataset_dir, window=3, scale=2, target_frame='last')
    assert data2[0]['lr_frames'].shape == (3, 3, 128, 96)


def test_window_frames_aligned_and_in_order(dataset_dir):
    data = PoseTrackWindows(dataset_dir / 'annotations/val', dataset_dir, window=5, target_frame='center', scale=4)
    window = data.crops(2)  # frame 2, person 0 -> frames [0, 1, 2, 3, 4]
    assert window.image_id % 100 == 2
    blue = window.hr_frames[:, 128, 96, 2]
    assert blue.tolist() == [0, 20, 40, 60, 80]
    # Same affine for every frame: the position-encoding channels agree pixel for pixel.
    assert (window.hr_frames[:, :, :, :2] == window.hr_frames[2:3, :, :, :2]).all()
    edge = data.crops(4)  # frame 5 -> [3, 4, 5, 5, 5]
    assert edge.hr_frames[:, 128, 96, 2].tolist() == [60, 80, 100, 100, 100]
    # The crop is the target frame's box warped with crop_affine.
    person = data.videos[0].people_in(data.videos[0].images[2])[0]
    center, size = crops.box_to_center_scale(person.bbox_xywh)
    expected = crops.warp_crop(frame_image(2), crops.crop_affine(center, size, (256, 192)), (256, 192))
    np.testing.assert_array_equal(window.hr_frames[2], expected)
    np.testing.assert_array_equal(window.lr_frames[2], degrade(expected, 4))
    # Keypoints map to HR-crop pixels and back to the image through crop_to_image.
    sample = data[2]
    back = crops.transform_points(sample['keypoints'][:, :2].numpy(), sample['crop_to_image'].numpy())
    annotated = person.visible
    np.testing.assert_allclose(back[annotated], person.keypoints[annotated, :2], atol=1e-3)


def test_flip_swaps_joints_and_mirrors_all_frames(dataset_dir, monkeypatch):
    data = PoseTrackWindows(dataset_dir / 'annotations/val', dataset_dir, window=3, target_frame='center', scale=4)
    plain = data.crops(0)
    monkeypatch.setattr(data, 'augmentation', lambda index: WindowAugmentation(flip=True))
    flipped = data.crops(0)
    perm = flip_permutation('posetrack')
    # Left shoulder of the flipped sample is the mirrored right shoulder of the plain one.
    for joint in (5, 7, 9, 11, 13, 15, 0, 1, 2):
        x_plain, y_plain = plain.keypoints[perm[joint], :2]
        x_flip, y_flip = flipped.keypoints[joint, :2]
        assert y_flip == pytest.approx(y_plain)
        assert x_flip == pytest.approx(192 - x_plain, abs=1e-6)  # crop_affine mirrors about x = W / 2
    assert (flipped.keypoints[:, 2] == plain.keypoints[perm, 2]).all()
    # Every frame of the window is mirrored with the same map: column x of the flip is column 192 - x.
    difference = flipped.hr_frames[:, :, 1:].astype(int) - plain.hr_frames[:, :, :0:-1].astype(int)
    assert np.abs(difference).max() <= 1


def test_augmentation_is_deterministic_and_window_consistent(dataset_dir):
    config = AugmentConfig(rotation_prob=1.0, flip_prob=0.5, photometric_prob=1.0)
    make = lambda seed: PoseTrackWindows(dataset_dir / 'annotations/val', dataset_dir, window=3,  # noqa: E731
                                         target_frame='center', scale=4, augment=config, seed=seed)
    a, b = make(7), make(7)
    for index in range(len(a)):
        first, second = a[index], b[index]
        for key in ('lr_frames', 'hr_image', 'heatmaps', 'keypoints', 'crop_to_image'):
            assert torch.equal(first[key], second[key]), key
    assert not torch.equal(make(8)[0]['hr_image'], a[0]['hr_image'])
    a.set_epoch(1)
    assert not torch.equal(a[0]['hr_image'], b[0]['hr_image'])
    aug = make(7).augmentation(1)
    assert abs(aug.rotation_deg) <= 30 and 0.75 <= aug.scale <= 1.25 and aug.has_photometric
    # One draw per window: every frame got the same geometry (position channels equal) ...
    geometric = PoseTrackWindows(dataset_dir / 'annotations/val', dataset_dir, window=3, target_frame='center',
                                 scale=4, seed=7, augment=AugmentConfig(rotation_prob=1.0, photometric_prob=0.0))
    window = geometric.crops(1)
    assert geometric.augmentation(1).rotation_deg != 0
    assert (window.hr_frames[..., :2] == window.hr_frames[:1, ..., :2]).all()
    # ... and the same colour change: equal input pixels give equal output pixels in every frame.
    grey = np.full((4, 4, 3), (90, 60, 30), np.uint8)
    assert (aug.photometric(grey) == aug.photometric(grey.copy())).all() and (aug.photometric(grey) != grey).any()


def test_degradation_sizes_and_blur():
    hr = np.random.default_rng(0).integers(0, 256, (256, 192, 3), dtype=np.uint8)
    assert degrade(hr, 2).shape == (128, 96, 3) and degrade(hr, 4).shape == (64, 48, 3)
    assert lr_size(4) == (64, 48) and default_blur_sigma(4) == pytest.approx(1.6)
    # Blur removes the aliasing of noise: the blurred LR has less variance than plain subsampling.
    assert degrade(hr, 4).std() < degrade(hr, 4, blur_sigma=0).std()
    with pytest.raises(ValueError, match='scale'):
        degrade(hr, 3)


def test_missing_frame_raises_at_construction(dataset_dir):
    (dataset_dir / 'images/val/000001_fixture/000003.png').unlink()
    with pytest.raises(FileNotFoundError, match='000003.png'):
        PoseTrackWindows(dataset_dir / 'annotations/val', dataset_dir, window=5, target_frame='center', scale=4)


def test_unreadable_frame_is_named(dataset_dir):
    (dataset_dir / 'images/val/000001_fixture/000001.png').write_bytes(b'not an image')
    data = PoseTrackWindows(dataset_dir / 'annotations/val', dataset_dir, window=3, target_frame='center', scale=4)
    with pytest.raises(OSError, match='000001.png'):
        data[0]
