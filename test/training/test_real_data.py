"""Training data for real footage: far-camera LR crops, detector-style box shifts, several sources."""
import numpy as np
import pytest

from starpose_model import crops
from starpose_testing.posetrack_fixtures import make_video, write_dataset
from starpose_training.augment import AugmentConfig, sample_augmentation
from starpose_training.dataset import ConcatWindows, PoseTrackWindows, build_dataset
from starpose_training.degradation import camera_lr_crop, degrade
from starpose_training.train_config import TrainConfig


def _dot_frame(x: int, y: int) -> np.ndarray:
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[y - 4:y + 4, x - 4:x + 4] = 255
    return frame


def _peak(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of a uint8 image (x, y)."""
    weight = image[..., 0].astype(np.float64)
    ys, xs = np.mgrid[:image.shape[0], :image.shape[1]]
    return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()


@pytest.mark.parametrize('factor', [1.0, 2.0, 4.0, 7.3])
def test_far_camera_crop_is_registered_with_the_hr_crop(factor):
    frame = _dot_frame(300, 220)
    center, size = crops.box_to_center_scale((260, 150, 80, 160))
    image_to_hr = crops.crop_affine(center, size, (256, 192))
    hr = crops.warp_crop(frame, image_to_hr, (256, 192))
    far = camera_lr_crop(frame, image_to_hr, factor, 4)
    assert far.shape == (64, 48, 3)
    np.testing.assert_allclose(_peak(far), _peak(degrade(hr, 4)), atol=0.35)


def test_a_far_camera_loses_detail_the_blurred_hr_crop_keeps():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    center, size = crops.box_to_center_scale((260, 150, 80, 160))
    image_to_hr = crops.crop_affine(center, size, (256, 192))
    near, far = camera_lr_crop(frame, image_to_hr, 1.0, 4), camera_lr_crop(frame, image_to_hr, 6.0, 4)
    assert far.astype(float).std() < 0.6 * near.astype(float).std()  # 6x fewer pixels on the person


def test_shift_and_camera_draws_follow_the_config():
    config = AugmentConfig(shift_std=0.1, camera_downscale=(1.0, 8.0))
    draws = [sample_augmentation(np.random.default_rng(k), config) for k in range(400)]
    shifts = np.array([d.shift for d in draws])
    factors = np.array([d.camera_downscale for d in draws])
    assert 0.07 < shifts.std() < 0.11 and np.abs(shifts).max() <= 0.25
    assert factors.min() >= 1.0 and factors.max() <= 8.0 and 2.0 < np.exp(np.log(factors).mean()) < 4.0
    plain = sample_augmentation(np.random.default_rng(0), AugmentConfig())
    assert plain.shift == (0.0, 0.0) and plain.camera_downscale is None


def test_data_sources_are_concatenated_with_repeats(tmp_path):
    for name, people in (('a', 1), ('b', 2)):
        write_dataset(tmp_path / name, [make_video(labeled=(0, 2), people_per_frame=people)])
    config = {'model': {'name': 'tiny'},
              'data': {'sources': [{'root': str(tmp_path / 'a'), 'train': 'annotations/val', 'repeat': 2},
                                   {'root': str(tmp_path / 'b'), 'train': 'annotations/val'}],
                       'augment': {'shift_std': 0.05, 'camera_downscale': [1, 4]}}}
    typed = TrainConfig.from_dict(config)
    data = build_dataset(typed.data, 'train', typed.model.star_pose_config(), window=5)
    assert isinstance(data, ConcatWindows) and [len(p) for p in data.datasets] == [2, 2, 4]
    assert all(isinstance(p, PoseTrackWindows) for p in data.datasets)
    first, repeat = data[0], data[2]  # the same person in the two copies: augmented differently
    assert not np.array_equal(first['lr_frames'].numpy(), repeat['lr_frames'].numpy())
    data.set_epoch(3)
    assert {p.epoch for p in data.datasets} == {3}
    with pytest.raises(ValueError, match=r'unknown key data.sources\[0\].trian'):
        TrainConfig.from_dict({**config, 'data': {'sources': [{'root': 'x', 'trian': 'y'}]}})


def test_fetching_without_the_debian_tools_is_one_clear_error(tmp_path, monkeypatch):
    from starpose_training.real_footage import FootageError, fetch_vtest, main

    monkeypatch.setenv('PATH', str(tmp_path))  # no apt-get, dpkg-deb, tar
    with pytest.raises(FootageError, match='needs apt-get'):
        fetch_vtest(tmp_path / 'cache')
    assert main(['--cache', str(tmp_path / 'cache')]) == 1
    cached = tmp_path / 'cache2'
    cached.mkdir()
    (cached / 'vtest.avi').write_bytes(b'x')  # a cached clip is used as it is, no tool needed
    assert fetch_vtest(cached) == cached / 'vtest.avi'
