"""The batches of a run in an order that survives a resume: a seeded permutation per epoch, from any sample on.

Every sample's random augmentation is a pure function of (seed, epoch, index) (the dataset's
`set_epoch`, as `PoseTrackWindows` does it), so where a run resumes changes nothing it sees.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from starpose_training.runtime import Runtime
from starpose_training.state import ignore_stop_signals
from starpose_training.train_config import Schedule


class ResumableSampler(DistributedSampler):
    """DistributedSampler (seeded permutation per epoch) that can start part-way into an epoch."""

    def __init__(self, dataset: Dataset, runtime: Runtime, seed: int):
        super().__init__(dataset, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=True,
                         seed=seed, drop_last=True)
        self.skip = 0

    def set_position(self, epoch: int, samples_done: int) -> None:
        """Iterate epoch `epoch` from its `samples_done`-th sample (of this rank) onwards."""
        self.set_epoch(epoch)
        self.skip = samples_done

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return self.num_samples - self.skip


def collate(samples: list[dict]) -> dict:
    """Stack tensors/arrays; keep other metadata as lists."""
    batch = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], np.ndarray) and values[0].dtype != object:
            batch[key] = torch.from_numpy(np.stack(values))
        else:
            batch[key] = values
    return batch


class EpochBatches:
    """Each epoch's batches for this rank (`batch_size / world_size` samples a step)."""

    def __init__(self, dataset: Dataset, schedule: Schedule, runtime: Runtime):
        self.dataset, self.schedule, self.runtime = dataset, schedule, runtime
        self.sampler = ResumableSampler(dataset, runtime, schedule.seed)
        self.batch_size = schedule.batch_size // runtime.world_size
        if self.batch_size < 1 or len(self.sampler) < self.batch_size:
            raise ValueError(f'dataset of {len(dataset)} samples is too small for batch {schedule.batch_size} '
                             f'on {runtime.world_size} process(es)')
        self.steps_per_epoch = len(self.sampler) // self.batch_size

    def epoch(self, epoch: int, samples_done: int = 0) -> DataLoader:
        """The batches of `epoch` after its first `samples_done` samples (of this rank)."""
        if hasattr(self.dataset, 'set_epoch'):
            self.dataset.set_epoch(epoch)
        self.sampler.set_position(epoch, samples_done)
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=self.sampler, drop_last=True,
                          num_workers=self.schedule.num_workers, collate_fn=collate,
                          worker_init_fn=ignore_stop_signals, pin_memory=self.runtime.device.type == 'cuda',
                          generator=torch.Generator().manual_seed(self.schedule.seed + epoch))


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on `device` (metadata lists stay)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
