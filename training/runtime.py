"""Where a training process runs: device, torchrun rank and world size, autocast dtype, seeding.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without it the process is rank 0 of 1.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass
class Runtime:
    """Where this process runs: device, rank and world size."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes checkpoints and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process (torchrun)."""
        return self.world_size > 1


def setup_runtime(device: str | None = None) -> Runtime:
    """Join the torchrun process group if there is one (NCCL on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    use_cuda = torch.cuda.is_available() and device != 'cpu'
    if device and device.startswith('cuda') and not torch.cuda.is_available():
        raise RuntimeError(f'device {device!r} requested but CUDA is not available')
    if use_cuda:
        torch.cuda.set_device(local_rank)
        torch_device = torch.device('cuda', local_rank)
    else:
        torch_device = torch.device('cpu')
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend='nccl' if use_cuda else 'gloo')
    return Runtime(torch_device, rank, world_size, local_rank)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for `schedule.amp` (`auto` = bf16 where supported on CUDA, fp16 else; off on CPU)."""
    if mode == 'off' or (mode == 'auto' and device.type != 'cuda'):
        return None
    if mode == 'auto':
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {'bf16': torch.bfloat16, 'fp16': torch.float16}[mode]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper."""
    return model.module if isinstance(model, DistributedDataParallel) else model
