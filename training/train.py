"""STAR-Pose training (`starpose-train`): one visible loop for the SR network and the pose net.

The loop reads top to bottom like nanoGPT: config -> data -> models -> optimiser/schedule ->
resume -> for each step: batch, forward under autocast, backward, step, log, checkpoint.
What differs between SR training and pose-net training is a small *task* object (the trainable
module, its loss on a batch and its TensorBoard pictures); `SRTask` lives here, `PoseTask` in
`train_pose.py`. Everything else (DDP, AMP, the paper's LR schedule, exact resume, logging) is
this one loop.

Exact resume: a run is a deterministic function of the config. The per-epoch sample order is a
seeded permutation (DistributedSampler); every sample's random augmentation is a pure function
of (seed, epoch, index) (the dataset's `set_epoch`, as `PoseTrackWindows` does it); and the
training state saved every `checkpoint_every` steps holds model, optimiser, scheduler, grad
scaler, python/numpy/torch RNG states and the data position (epoch, samples consumed in it).
A killed run resumed from its last state repeats the uninterrupted run's losses step for step
and loses at most one checkpoint interval.

Usage::

    starpose-train training/configs/paper_64x48.yaml --set data.root=/data/posetrack18
    torchrun --nproc_per_node 4 -m starpose_training.train training/configs/paper_64x48.yaml
    starpose-train CONFIG --stage pose    # only train the pose net
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from starpose_training.state import (
    StopRequest,
    TrainingStopped,
    atomic_save,
    check_resumable,
    ignore_stop_signals,
    rng_states,
    set_rng_states,
)
from starpose_training.tasks import PoseTask, SRTask, freeze
from starpose_training.train_config import Schedule, check_config, load_config, resolve_config_path
from starpose_training.train_pose import POSE_WEIGHTS_FILE, hrnet_init, save_pose_weights

STATE_FILE = 'train_state.pt'
METRICS_FILE = 'metrics.jsonl'
FINAL_CHECKPOINT = 'starpose.pt'


# --------------------------------------------------------------------------------------------
# Distributed set-up (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK).
# --------------------------------------------------------------------------------------------

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
    """Autocast dtype for `mode` (`auto` = bf16 where supported on CUDA, fp16 else; off on CPU)."""
    if mode == 'off' or (mode == 'auto' and device.type != 'cuda'):
        return None
    if mode == 'auto':
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode in ('bf16', 'fp16'):
        return torch.bfloat16 if mode == 'bf16' else torch.float16
    raise ValueError(f'schedule.amp must be auto, bf16, fp16 or off, got {mode!r}')


# --------------------------------------------------------------------------------------------
# Data order and per-sample randomness that survive a resume.
# --------------------------------------------------------------------------------------------

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


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _move(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop log lines written after the state we resume from, so the log has each step once."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line and json.loads(line)['step'] <= last_step]
    path.write_text(''.join(f'{line}\n' for line in lines))


# --------------------------------------------------------------------------------------------
# The loop.
# --------------------------------------------------------------------------------------------

def _resume(resume: str | None, out_dir: Path, task_name: str, config: dict | None, runtime: Runtime,
            stateful: dict) -> tuple[int, int, int]:
    """(step, epoch, samples done) to start from, loading `stateful` (model, optimiser, ...) from a state.

    `resume`: `auto` continues from `out_dir/train_state.pt` when it exists, a path resumes from
    that file, None starts fresh.
    """
    state_path = Path(resume) if resume not in (None, 'auto') else out_dir / STATE_FILE
    if resume is None or not state_path.exists():
        if resume not in (None, 'auto'):
            raise FileNotFoundError(f'resume state {state_path} does not exist')
        if runtime.is_main:  # a fresh run in an old folder: its log starts over too
            _truncate_metrics(out_dir / METRICS_FILE, 0)
        return 0, 0, 0
    try:
        state = torch.load(state_path, map_location='cpu', weights_only=False)
    except Exception as error:  # truncated, not a torch file, another program's pickle
        raise ValueError(f'{state_path} is not a readable training state ({type(error).__name__}); pass '
                         '--resume none to start over, or choose another --out') from None
    if not isinstance(state, dict) or 'model' not in state:
        raise ValueError(f'{state_path} is not a StarPose training state; pass --resume none to start over')
    check_resumable(state, state_path, task_name, config)
    for key, target in stateful.items():
        target.load_state_dict(state[key])
    set_rng_states(state['rng'][runtime.rank] if runtime.rank < len(state['rng']) else state['rng'][0])
    if runtime.is_main:
        _truncate_metrics(out_dir / METRICS_FILE, state['step'])
        print(f'[{task_name}] resumed from {state_path} at step {state["step"]} (epoch {state["epoch"]})')
    return state['step'], state['epoch'], state['samples_done']


def _optimise(loss: torch.Tensor, optimizer, scaler, scheduler, trainable: list, grad_clip: float | None) -> None:
    """One optimiser step: scaled backward, optional gradient clipping, the LR schedule's step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def _log(values: dict, step: int, epoch: int, lr: float, runtime: Runtime, metrics_log, writer,
         task_name: str) -> dict | None:
    """Average the values over ranks; rank 0 appends them to metrics.jsonl and TensorBoard (its record)."""
    if runtime.distributed:
        for value in values.values():
            dist.all_reduce(value, op=dist.ReduceOp.AVG)
    if not runtime.is_main:
        return None
    record = {'step': step, 'epoch': epoch, 'lr': lr, **{k: float(v) for k, v in values.items()}}
    metrics_log.write(json.dumps(record) + '\n')
    metrics_log.flush()
    for key, value in record.items():
        if key not in ('step', 'epoch'):
            writer.add_scalar(f'{task_name}/{key}', value, step)
    return record


def fit(task, train_set: Dataset, schedule: Schedule, out_dir: str | os.PathLike, runtime: Runtime,
        resume: str | None = 'auto', config: dict | None = None) -> dict:
    """Train `task.model` on `train_set`; returns a summary (steps, final losses, time).

    `resume`: `auto`, a state file, or None (see `_resume`).
    """
    out_dir = Path(out_dir)
    device = runtime.device
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    if schedule.threads and device.type == 'cpu':
        torch.set_num_threads(schedule.threads)
    seed_everything(schedule.seed + runtime.rank)

    # Data: seeded per-epoch order (sharded across ranks); the dataset's random augmentation is a
    # pure function of (seed, epoch, index) (`set_epoch`), so it does not depend on where we resume.
    sampler = ResumableSampler(train_set, runtime, schedule.seed)
    batch_size = schedule.batch_size // runtime.world_size
    if batch_size < 1 or len(sampler) < batch_size:
        raise ValueError(f'dataset of {len(train_set)} samples is too small for batch {schedule.batch_size} '
                         f'on {runtime.world_size} process(es)')
    steps_per_epoch = len(sampler) // batch_size
    total_steps = schedule.run_steps(steps_per_epoch)
    if schedule.max_steps is not None:  # stop early; the schedule stays the full run's
        total_steps = min(total_steps, schedule.max_steps)

    # Model, optimiser, the paper's step schedule (milestones converted to optimiser steps).
    model = task.model.to(device)
    model.train()
    if runtime.distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=schedule.lr, weight_decay=schedule.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=schedule.milestone_steps(steps_per_epoch),
                                                     gamma=schedule.gamma)
    dtype = amp_dtype(schedule.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    # Resume: everything that makes the next step identical to the uninterrupted run's.
    step, epoch, samples_done = _resume(resume, out_dir, task.name, config, runtime,
                                        {'model': unwrap(model), 'optimizer': optimizer, 'scheduler': scheduler,
                                         'scaler': scaler})

    def save_state() -> None:
        rngs = [None] * runtime.world_size
        if runtime.distributed:
            dist.all_gather_object(rngs, rng_states())
        else:
            rngs = [rng_states()]
        if runtime.is_main:
            atomic_save({'step': step, 'epoch': epoch, 'samples_done': samples_done,
                         'model': unwrap(model).state_dict(), 'optimizer': optimizer.state_dict(),
                         'scheduler': scheduler.state_dict(), 'scaler': scaler.state_dict(), 'rng': rngs,
                         'config': config, 'task': task.name}, out_dir / STATE_FILE)

    writer = None
    metrics_log = None
    if runtime.is_main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out_dir / 'tensorboard'))
        metrics_log = (out_dir / METRICS_FILE).open('a')
    progress = tqdm(total=total_steps, initial=step, desc=task.name, disable=not runtime.is_main,
                    dynamic_ncols=True, mininterval=2.0)
    started, losses, stopping = time.time(), [], False
    with StopRequest() as stop:  # handlers restored even when a step raises
        while step < total_steps and not stopping:
            if hasattr(train_set, 'set_epoch'):
                train_set.set_epoch(epoch)
            sampler.set_position(epoch, samples_done)
            loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, drop_last=True,
                                num_workers=schedule.num_workers, collate_fn=collate,
                                worker_init_fn=ignore_stop_signals,
                                pin_memory=device.type == 'cuda',
                                generator=torch.Generator().manual_seed(schedule.seed + epoch))
            for batch in loader:
                batch = _move(batch, device)
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss, parts = task.loss(model, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f'[{task.name}] loss is {loss.item()} at step {step}; '
                                             f'last good state: {out_dir / STATE_FILE}')
                _optimise(loss, optimizer, scaler, scheduler, trainable, schedule.grad_clip)
                step += 1
                samples_done += batch_size
                losses.append(loss.item())

                if step % schedule.log_every == 0 or step == total_steps:
                    values = {'loss': loss.detach(), **{k: v.detach() for k, v in parts.items()}}
                    record = _log(values, step, epoch, scheduler.get_last_lr()[0], runtime, metrics_log, writer,
                                  task.name)
                    if record is not None:
                        progress.set_postfix(loss=f'{record["loss"]:.4f}', lr=f'{record["lr"]:.1e}')
                if runtime.is_main and schedule.image_every and step % schedule.image_every == 0:
                    unwrap(model).eval()
                    writer.add_image(f'{task.name}/samples', task.pictures(batch), step)
                    unwrap(model).train()
                # across DDP ranks the stop flag costs a collective and a sync: ask at log steps only
                ask = not runtime.distributed or step % schedule.log_every == 0 or step == total_steps
                stopping = ask and stop.requested(runtime.distributed, runtime.device)
                if step % schedule.checkpoint_every == 0 or step == total_steps or stopping:
                    save_state()
                progress.update(1)
                if step >= total_steps or stopping:
                    break
            else:  # epoch finished
                epoch, samples_done = epoch + 1, 0
    progress.close()
    if runtime.is_main:
        metrics_log.close()
        writer.close()
    if stopping:
        raise TrainingStopped(f'[{task.name}] {stop.signal_name or "a signal"} at step {step} of {total_steps}: the '
                              f'state is saved in {out_dir / STATE_FILE}; run the same command to continue')
    return {'steps': step, 'epochs_done': epoch, 'seconds': time.time() - started,
            'first_losses': losses[:5], 'last_losses': losses[-5:]}


# --------------------------------------------------------------------------------------------
# Stages: pose net (trained here or loaded), then SR training; the final inference checkpoint.
# --------------------------------------------------------------------------------------------

def model_config(config: dict):
    """The StarPoseConfig a training config selects (`model.name`, `model.ablation`, `model.overrides`)."""
    from starpose_model.config import get_config

    section = config.get('model') or {}
    if 'name' not in section:
        raise ValueError('training config: model.name is missing (a starpose_model.config preset, e.g. tiny)')
    return get_config(section['name'], section.get('ablation'), **(section.get('overrides') or {}))


def _data_path(data: dict, key: str) -> Path:
    if not data.get(key):
        raise ValueError(f'training config: data.{key} is missing')
    path = Path(data[key])
    return path if path.is_absolute() else Path(data.get('root', '.')) / path


class ConcatWindows(ConcatDataset):
    """Several window datasets as one (`data.sources`), each repeated `repeat` times, one epoch stream."""

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of an epoch in every part."""
        for part in self.datasets:
            part.set_epoch(epoch)


def _data_sources(data: dict, split: str) -> list[tuple[dict, int]]:
    """(source section, repeat) pairs: `data.sources` entries, or `data` itself as the one source."""
    if 'sources' not in data:
        return [(data, 1)]
    sources = data['sources']
    if not isinstance(sources, list) or not sources:
        raise ValueError('training config: data.sources must be a non-empty list of {root, train, repeat}')
    picked = []
    for k, source in enumerate(sources):
        unknown = set(source) - {'root', 'train', 'repeat'}
        if unknown:
            raise ValueError(f'training config: data.sources[{k}] has unknown keys {sorted(unknown)}')
        if source.get(split):
            picked.append((source, int(source.get('repeat', 1))))
    if not picked:
        raise ValueError(f'training config: no entry of data.sources has a {split!r} split')
    return picked


def build_dataset(config: dict, split: str, mcfg, window: int, seed: int = 0, augment: bool | None = None) -> Dataset:
    """PoseTrack windows of `split` (`data.<split>`: an annotation dir or JSON under `data.root`).

    Frame files are `data.root / file_name`, as PoseTrack's JSON names them. With `data.sources`
    (a list of `{root, train, repeat}`), the parts are concatenated, real footage repeated to
    weigh more than synthetic (each copy differently augmented). Training splits use the
    paper's augmentation (`data.augment`: true, false or AugmentConfig fields).
    """
    from starpose_training.augment import AugmentConfig
    from starpose_training.dataset import PoseTrackWindows

    data = config.get('data') or {}
    augment_setting = data.get('augment', True) if augment is None else augment
    augmentation = None
    if split == 'train' and augment_setting:
        augmentation = AugmentConfig(**augment_setting) if isinstance(augment_setting, dict) else AugmentConfig()
    parts = []
    for source, repeat in _data_sources(data, split):
        for _ in range(repeat):  # each copy its own seed, so repeats are differently augmented
            parts.append(PoseTrackWindows(_data_path(source, split), source.get('root', '.'), window=window,
                                          target_frame=mcfg.target_frame, scale=mcfg.scale, augment=augmentation,
                                          seed=seed + len(parts), blur_sigma=data.get('blur_sigma'),
                                          cache_frames=int(data.get('cache_frames', 64))))
    return parts[0] if len(parts) == 1 else ConcatWindows(parts)


def _pose_weights_path(config: dict) -> Path:
    pose = config.get('pose') or {}
    if pose.get('checkpoint'):
        return Path(pose['checkpoint'])
    return Path(config['out_dir']) / 'pose' / POSE_WEIGHTS_FILE


def run_pose_stage(config: dict, runtime: Runtime, resume: str | None = 'auto') -> Path:
    """Train the pose net on HR crops (config `pose.train` = a schedule); returns its weights file.

    Its training state and logs live next to the weights (`pose.checkpoint`, default
    `OUT/pose/pose_net.pth`), so several SR runs can share one pose net. `pose.augment`
    (default: `data.augment`) sets its augmentation.
    """
    from starpose_model.hrnet import build_pose_net

    mcfg = model_config(config)
    pose = config.get('pose') or {}
    schedule = Schedule.from_dict(pose.get('train'))
    train_set = build_dataset(config, 'train', mcfg, window=1, seed=schedule.seed, augment=pose.get('augment'))
    seed_everything(schedule.seed)  # the initial weights are part of the run
    pose_net = hrnet_init(build_pose_net(mcfg.pose_arch))
    path = _pose_weights_path(config)
    summary = fit(PoseTask(pose_net), train_set, schedule, path.parent, runtime, resume=resume, config=config)
    if runtime.is_main:
        save_pose_weights(pose_net, path)
        print(f'[pose] {summary["steps"]} steps in {summary["seconds"]:.0f} s -> {path}')
    return path


def load_frozen_pose_net(config: dict, arch: str) -> torch.nn.Module:
    """The pose net the SR network is trained against, loaded strictly and frozen."""
    from starpose_model.hrnet import build_pose_net, load_pose_checkpoint

    path = _pose_weights_path(config)
    if not path.is_file():
        raise FileNotFoundError(f'pose net weights {path} do not exist: set pose.checkpoint to an official/mmpose '
                                f'HRNet checkpoint, or give pose.train and run the pose stage first')
    return freeze(load_pose_checkpoint(build_pose_net(arch), path))


def run_sr_stage(config: dict, runtime: Runtime, resume: str | None = 'auto') -> Path | None:
    """Train STAR-Pose's SR network against the frozen pose net; returns the inference checkpoint."""
    from starpose_model.checkpoint import save_checkpoint
    from starpose_model.loss import CompoundLoss
    from starpose_model.star_pose import StarPoseSR

    mcfg = model_config(config)
    schedule = Schedule.from_dict(config.get('schedule'))
    train_set = build_dataset(config, 'train', mcfg, window=mcfg.window, seed=schedule.seed)
    pose_net = load_frozen_pose_net(config, mcfg.pose_arch).to(runtime.device)
    seed_everything(schedule.seed)  # the initial weights are part of the run
    task = SRTask(StarPoseSR(mcfg), CompoundLoss(pose_net, mcfg.loss_lambda), target=mcfg.target_frame)
    out_dir = Path(config['out_dir'])
    summary = fit(task, train_set, schedule, out_dir, runtime, resume=resume, config=config)
    if not runtime.is_main:
        return None
    path = out_dir / FINAL_CHECKPOINT
    tmp = out_dir / f'.{FINAL_CHECKPOINT}.tmp'
    save_checkpoint(tmp, task.sr_net.cpu(), pose_net.cpu(), mcfg,
                    extra={'steps': summary['steps'], 'train_config': yaml.safe_dump(config)})
    os.replace(tmp, path)
    print(f'[sr] {summary["steps"]} steps in {summary["seconds"]:.0f} s -> {path}')
    return path


def main(argv: list[str] | None = None) -> None:
    """`starpose-train CONFIG [--stage all|pose|sr] [--set key=value ...] [--resume auto|none|PATH]`."""
    parser = argparse.ArgumentParser(prog='starpose-train', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='YAML file or the name of a shipped config (training/configs/)')
    parser.add_argument('--stage', choices=('all', 'pose', 'sr'), default='all',
                        help='all: train the pose net first when pose.train is set and its weights are missing')
    parser.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                        help='override a config value, e.g. --set schedule.epochs=10 (repeatable)')
    parser.add_argument('--out', help='output directory (overrides out_dir)')
    parser.add_argument('--resume', default='auto',
                        help='auto (continue from OUT/train_state.pt if present), none, or a state file')
    parser.add_argument('--max-steps', type=int, help='stop after this many optimiser steps (per stage)')
    parser.add_argument('--device', help='cpu or cuda (default: cuda when available)')
    args = parser.parse_args(argv)

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f'out_dir={args.out}')
    try:
        config = load_config(args.config, overrides)
        config.setdefault('out_dir', f'outputs/train/{resolve_config_path(args.config).stem}')
        check_config(config)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f'starpose-train: error: {error}') from None
    if args.max_steps is not None:
        for section in (config.setdefault('schedule', {}), (config.get('pose') or {}).get('train')):
            if isinstance(section, dict):
                section['max_steps'] = args.max_steps
    resume = None if args.resume == 'none' else args.resume
    if resume not in (None, 'auto') and args.stage == 'all':
        raise SystemExit('starpose-train: error: --resume PATH names one stage\'s state; give --stage pose or '
                         '--stage sr with it (each stage keeps its own state file)')
    runtime = setup_runtime(args.device)
    try:
        pose_weights = _pose_weights_path(config)
        needs_pose = args.stage == 'pose' or (args.stage == 'all' and not pose_weights.is_file())
        if needs_pose:
            if not (config.get('pose') or {}).get('train'):
                raise FileNotFoundError(f'pose net weights {pose_weights} do not exist and the config has no '
                                        f'pose.train schedule to train them')
            run_pose_stage(config, runtime, resume)
            if runtime.distributed:
                dist.barrier()
        if args.stage in ('all', 'sr'):
            run_sr_stage(config, runtime, resume)
    except TrainingStopped as stopped:
        print(f'starpose-train: stopped: {stopped}', file=sys.stderr)
        raise SystemExit(130) from None
    except (ValueError, OSError, FloatingPointError) as error:  # user errors, a full disk, a diverged lr
        raise SystemExit(f'starpose-train: error: {error}') from None
    finally:
        if runtime.distributed:
            dist.destroy_process_group()


if __name__ == '__main__':
    main()
