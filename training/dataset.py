"""PoseTrack windows as training samples (the "Training sample" contract of docs/architecture.md).

`build_dataset` makes the training set a config's `data` section names (one set or several).

One sample per annotated person (at least one visible joint and a box) in each labeled frame.
Its window holds T frames around (``center``) or ending at (``last``) that frame, edge frames
repeated. Every frame is cropped with the *target* frame's box and one augmentation draw, so the
crops are aligned; the HR crops are 256 x 192 and the LR crops their blurred, bicubic-downsampled
copies (`starpose_training.degradation`).

Randomness comes only from ``numpy.random.default_rng((seed, epoch, index))``: a sample is a pure
function of (seed, epoch, index), whatever the worker, process or resume point.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from starpose_model import crops
from starpose_model.config import StarPoseConfig
from starpose_model.contract import HR_SIZE, target_index
from starpose_model.heatmaps import HEATMAP_SIZE, SIGMA, generate_targets
from starpose_model.keypoints import POSETRACK_UNANNOTATED, flip_permutation
from starpose_training.augment import AugmentConfig, WindowAugmentation, sample_augmentation
from starpose_training.degradation import camera_lr_crop, degrade
from starpose_training.posetrack import PoseTrackPerson, PoseTrackVideo, check_frames_exist, read_posetrack
from starpose_training.train_config import DataSection, DataSource

LAYOUT = 'posetrack'


@dataclass(frozen=True)
class SampleRef:
    """Where a sample comes from: video, frame index within it and person index within the frame."""

    video: int
    frame: int
    person: int


@dataclass
class WindowCrops:
    """The uint8 crops of one window before conversion to tensors (also used by evaluation)."""

    hr_frames: np.ndarray  # (T, 256, 192, 3) uint8 RGB
    lr_frames: np.ndarray  # (T, h, w, 3) uint8 RGB
    keypoints: np.ndarray  # (17, 3) HR-crop x, y, visibility (flip-permuted)
    image_to_crop: np.ndarray  # (2, 3)
    person: PoseTrackPerson
    image_id: int


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as uint8 RGB, raising with the path when it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f'cannot read image file {path}')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class PoseTrackWindows(Dataset):
    """Windows of T frames around each annotated person, cropped, degraded and augmented.

    `annotations` is a PoseTrack18/21 annotation directory or JSON (or already-read videos);
    frame files are ``image_root / file_name`` and must all exist (checked up front).
    `augment=None` gives the plain, deterministic crops used for evaluation.
    """

    def __init__(self, annotations: str | Path | list[PoseTrackVideo], image_root: str | Path, *,
                 window: int, target_frame: str, scale: int,
                 augment: AugmentConfig | None = None, seed: int = 0, blur_sigma: float | None = None,
                 heatmap_sigma: float = SIGMA, cache_frames: int = 64):
        self.videos = annotations if isinstance(annotations, list) else read_posetrack(annotations)
        self.image_root = Path(image_root)
        check_frames_exist(self.videos, self.image_root)
        self.window = window
        self.target_frame = target_frame
        self.scale = scale
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.blur_sigma = blur_sigma
        self.heatmap_sigma = heatmap_sigma
        self.cache_frames = cache_frames
        self._cache: dict[str, np.ndarray] = {}  # file name -> RGB frame, least recently used first
        self.samples = self._index_samples()
        # Validate the window parameters now rather than in a worker.
        if self.samples:
            self.videos[0].window_indices(0, window, target_frame)

    def _index_samples(self) -> list[SampleRef]:
        refs = []
        for v, video in enumerate(self.videos):
            for f, image in enumerate(video.images):
                if not image.is_labeled:
                    continue
                for p, person in enumerate(video.people_in(image)):
                    if person.bbox_xywh is None:
                        raise ValueError(f"{video.source}: person {person.id} in image {image.id} has no 'bbox'")
                    box_ok = person.bbox_xywh[2] > 0 and person.bbox_xywh[3] > 0
                    if box_ok and person.visible.any():
                        refs.append(SampleRef(v, f, p))
        return refs

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of an epoch (call before iterating, like DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def augmentation(self, index: int) -> WindowAugmentation:
        """The augmentation drawn for a sample in the current epoch (identity without `augment`)."""
        if self.augment is None:
            return WindowAugmentation()
        rng = np.random.default_rng((self.seed, self.epoch, index))
        return sample_augmentation(rng, self.augment)

    def _frame(self, file_name: str) -> np.ndarray:
        """A decoded frame, from a small per-worker cache (a window's frames are shared by its neighbours)."""
        cached = self._cache.pop(file_name, None)
        if cached is None:
            cached = read_rgb(self.image_root / file_name)
            if len(self._cache) >= self.cache_frames:
                self._cache.pop(next(iter(self._cache)))
        self._cache[file_name] = cached
        return cached

    def crops(self, index: int) -> WindowCrops:
        """Crop, augment and degrade the window of sample `index` (uint8 images)."""
        ref = self.samples[index]
        video = self.videos[ref.video]
        image = video.images[ref.frame]
        person = video.people_in(image)[ref.person]
        aug = self.augmentation(index)

        center, size = crops.box_to_center_scale(person.bbox_xywh)
        center = center + np.asarray(aug.shift) * size
        affine = crops.crop_affine(center, size * aug.scale, HR_SIZE, rotation_deg=aug.rotation_deg, flip=aug.flip)
        frames = [self._frame(video.images[i].file_name)
                  for i in video.window_indices(ref.frame, self.window, self.target_frame)]
        hr = np.stack([aug.photometric(crops.warp_crop(frame, affine, HR_SIZE)) for frame in frames])
        if aug.camera_downscale is None:
            lr = np.stack([degrade(crop, self.scale, self.blur_sigma) for crop in hr])
        else:
            lr = np.stack([aug.photometric(camera_lr_crop(frame, affine, aug.camera_downscale, self.scale))
                           for frame in frames])

        keypoints = np.zeros_like(person.keypoints)
        keypoints[:, :2] = crops.transform_points(person.keypoints[:, :2], affine)
        keypoints[:, 2] = person.visible
        keypoints[list(POSETRACK_UNANNOTATED), 2] = 0.0
        if aug.flip:
            keypoints = keypoints[flip_permutation(LAYOUT)]
        keypoints[keypoints[:, 2] == 0, :2] = 0.0
        return WindowCrops(hr, lr, keypoints, affine, person, image.id)

    @property
    def target_index(self) -> int:
        """Index of the target frame within a window."""
        return target_index(self.window, self.target_frame)

    def __getitem__(self, index: int) -> dict:
        window = self.crops(index)
        heatmaps, target_weight = generate_targets(window.keypoints, HEATMAP_SIZE, sigma=self.heatmap_sigma)
        person = window.person
        return {
            'lr_frames': torch.from_numpy(window.lr_frames).permute(0, 3, 1, 2).float().div_(255.0),
            'hr_image': torch.from_numpy(window.hr_frames[self.target_index]).permute(2, 0, 1).float().div_(255.0),
            'heatmaps': torch.from_numpy(heatmaps),
            'target_weight': torch.from_numpy(target_weight),
            'keypoints': torch.from_numpy(window.keypoints.astype(np.float32)),
            'image_id': window.image_id,
            'track_id': -1 if person.track_id is None else person.track_id,
            'crop_to_image': torch.from_numpy(crops.invert_affine(window.image_to_crop).astype(np.float32)),
            'box_xywh': torch.from_numpy(person.bbox_xywh.astype(np.float32)),
            'index': index,
        }


class ConcatWindows(ConcatDataset):
    """Several window datasets as one (`data.sources`), each repeated `repeat` times, one epoch stream."""

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of an epoch in every part."""
        for part in self.datasets:
            part.set_epoch(epoch)


def build_dataset(data: DataSection, split: str, mcfg: StarPoseConfig, window: int, seed: int = 0,
                  augment: bool | AugmentConfig | None = None) -> Dataset:
    """PoseTrack windows of `split` (`data.<split>`: an annotation dir or JSON under `data.root`).

    `mcfg` sets the target frame and scale. Frame files are `data.root /
    file_name`, as PoseTrack's JSON names them. With `data.sources` the parts are concatenated,
    real footage repeated to weigh more than synthetic (each copy differently augmented).
    Training splits use `augment` (None: `data.augment`; true = the paper's augmentation).
    """
    setting = data.augment if augment is None else augment
    augmentation = None
    if split == 'train' and setting:
        augmentation = setting if isinstance(setting, AugmentConfig) else AugmentConfig()
    parts = []
    for source in _sources(data, split):
        for _ in range(source.repeat):  # each copy its own seed, so repeats are differently augmented
            parts.append(PoseTrackWindows(_split_path(source, split), source.root, window=window,
                                          target_frame=mcfg.target_frame, scale=mcfg.scale, augment=augmentation,
                                          seed=seed + len(parts), blur_sigma=data.blur_sigma,
                                          cache_frames=data.cache_frames))
    return parts[0] if len(parts) == 1 else ConcatWindows(parts)


def _sources(data: DataSection, split: str) -> list[DataSource]:
    """The `data.sources` entries that have `split`, or `data.root` / `data.train` as the one source."""
    if data.sources is None:
        return [DataSource(data.root, data.train)]
    picked = [source for source in data.sources if getattr(source, split)]
    if not picked:
        raise ValueError(f'training config: no entry of data.sources has a {split!r} split')
    return picked


def _split_path(source: DataSource, split: str) -> Path:
    if not getattr(source, split):
        raise ValueError(f'training config: data.{split} is missing')
    path = Path(getattr(source, split))
    return path if path.is_absolute() else Path(source.root) / path
