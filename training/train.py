"""STAR-Pose training (`starpose-train`): one visible loop for the SR network and the pose net.

The loop reads top to bottom like nanoGPT: config -> data -> models -> optimiser/schedule ->
resume -> for each step: batch, forward under autocast, backward, step, log, checkpoint.
What differs between SR training and pose-net training is a small *task* object (the trainable
module, its loss on a batch and its TensorBoard pictures, `tasks.py`). Everything else (DDP,
AMP, the paper's LR schedule, exact resume, logging) is this one loop; the typed config comes
from `train_config.py`, the batches from `batches.py`, the state on disk from `state.py`.

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
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from starpose_training.batches import EpochBatches, to_device
from starpose_training.dataset import build_dataset
from starpose_training.run_log import METRICS_FILE, RunLog, truncate_metrics
from starpose_training.runtime import Runtime, amp_dtype, seed_everything, setup_runtime, unwrap
from starpose_training.state import StopRequest, TrainingStopped, load_state, save_state
from starpose_training.tasks import PoseTask, SRTask, load_pose_net
from starpose_training.train_config import Schedule, TrainConfig, load_config
from starpose_training.train_pose import hrnet_init, save_pose_weights

STATE_FILE = 'train_state.pt'
FINAL_CHECKPOINT = 'starpose.pt'


# --------------------------------------------------------------------------------------------
# The loop.
# --------------------------------------------------------------------------------------------

def fit(task, train_set: Dataset, schedule: Schedule, out_dir: str | os.PathLike, runtime: Runtime,
        resume: str | None = 'auto', config: TrainConfig | None = None) -> dict:
    """Train `task.model` on `train_set`; returns a summary (steps, final losses, time).

    `resume`: `auto`, a state file, or None (see `_resume`); `config` is saved with the state, and
    a resume refuses a state saved with other settings.
    """
    out_dir, device = Path(out_dir), runtime.device
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    if schedule.threads and device.type == 'cpu':
        torch.set_num_threads(schedule.threads)
    seed_everything(schedule.seed + runtime.rank)

    # Data: a seeded order per epoch, sharded across ranks, that can start mid-epoch.
    batches = EpochBatches(train_set, schedule, runtime)
    total_steps = schedule.run_steps(batches.steps_per_epoch)
    if schedule.max_steps is not None:  # stop early; the schedule stays the full run's
        total_steps = min(total_steps, schedule.max_steps)

    # Model, optimiser, the paper's step schedule; autocast (fp16 with a grad scaler).
    model, optimizer, scheduler = _model_and_optimiser(task.model, schedule, batches.steps_per_epoch, runtime)
    dtype = amp_dtype(schedule.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    # Resume: everything that makes the next step identical to the uninterrupted run's.
    stateful = {'model': unwrap(model), 'optimizer': optimizer, 'scheduler': scheduler, 'scaler': scaler}
    step, epoch, samples_done = _resume(resume, out_dir, task.name, config, runtime, stateful)

    started, losses, stopping = time.time(), [], False
    with StopRequest() as stop, RunLog(out_dir, task, schedule, runtime, total_steps, step) as log:
        while step < total_steps and not stopping:
            for batch in batches.epoch(epoch, samples_done):
                batch = to_device(batch, device)
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss, parts = task.loss(model, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f'[{task.name}] loss is {loss.item()} at step {step}; '
                                             f'last good state: {out_dir / STATE_FILE}')
                _optimise(loss, optimizer, scaler, scheduler, schedule.grad_clip)
                step, samples_done = step + 1, samples_done + batches.batch_size
                losses.append(loss.item())

                log.after_step(step, epoch, scheduler.get_last_lr()[0], loss, parts, model, batch)
                # across DDP ranks the stop flag costs a collective and a sync: ask at log steps only
                ask = not runtime.distributed or step % schedule.log_every == 0 or step == total_steps
                stopping = ask and stop.requested(runtime.distributed, device)
                if step % schedule.checkpoint_every == 0 or step == total_steps or stopping:
                    save_state(out_dir / STATE_FILE, stateful, (step, epoch, samples_done), task.name, config,
                               runtime)
                if step >= total_steps or stopping:
                    break
            else:  # epoch finished
                epoch, samples_done = epoch + 1, 0
    if stopping:
        raise TrainingStopped(f'[{task.name}] {stop.signal_name or "a signal"} at step {step} of {total_steps}: the '
                              f'state is saved in {out_dir / STATE_FILE}; run the same command to continue')
    return {'steps': step, 'epochs_done': epoch, 'seconds': time.time() - started,
            'first_losses': losses[:5], 'last_losses': losses[-5:]}


def _resume(resume: str | None, out_dir: Path, task_name: str, config: TrainConfig | None, runtime: Runtime,
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
            truncate_metrics(out_dir / METRICS_FILE, 0)
        return 0, 0, 0
    step, epoch, samples_done = load_state(state_path, stateful, task_name, config, runtime.rank)
    if runtime.is_main:
        truncate_metrics(out_dir / METRICS_FILE, step)
        print(f'[{task_name}] resumed from {state_path} at step {step} (epoch {epoch})')
    return step, epoch, samples_done


def _model_and_optimiser(model: torch.nn.Module, schedule: Schedule, steps_per_epoch: int, runtime: Runtime):
    """The model to train, its Adam optimiser and the paper's step schedule.

    The model is on this process's device, in training mode, DDP-wrapped across processes; the
    milestones are converted to optimiser steps.
    """
    device = runtime.device
    model = model.to(device)
    model.train()
    if runtime.distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=schedule.lr,
                                 weight_decay=schedule.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=schedule.milestone_steps(steps_per_epoch),
                                                     gamma=schedule.gamma)
    return model, optimizer, scheduler


def _optimise(loss: torch.Tensor, optimizer, scaler, scheduler, grad_clip: float | None) -> None:
    """One optimiser step: scaled backward, optional gradient clipping, the LR schedule's step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group['params']], grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


# --------------------------------------------------------------------------------------------
# Stages: pose net (trained here or loaded), then SR training; the final inference checkpoint.
# --------------------------------------------------------------------------------------------

def run_pose_stage(config: TrainConfig, runtime: Runtime, resume: str | None = 'auto') -> Path:
    """Train the pose net on HR crops (config `pose.train` = a schedule); returns its weights file.

    Its training state and logs live next to the weights (`pose.checkpoint`, default
    `OUT/pose/pose_net.pth`), so several SR runs can share one pose net. `pose.augment`
    (default: `data.augment`) sets its augmentation.
    """
    from starpose_model.hrnet import build_pose_net

    schedule, path = config.pose.train, config.pose_weights
    if schedule is None:
        raise FileNotFoundError(f'pose net weights {path} do not exist and the config has no pose.train schedule '
                                f'to train them')
    mcfg = config.model.star_pose_config()
    train_set = build_dataset(config.data, 'train', mcfg, window=1, seed=schedule.seed, augment=config.pose.augment)
    seed_everything(schedule.seed)  # the initial weights are part of the run
    pose_net = hrnet_init(build_pose_net(mcfg.pose_arch))
    summary = fit(PoseTask(pose_net), train_set, schedule, path.parent, runtime, resume=resume, config=config)
    if runtime.is_main:
        save_pose_weights(pose_net, path)
        print(f'[pose] {summary["steps"]} steps in {summary["seconds"]:.0f} s -> {path}')
    return path


def run_sr_stage(config: TrainConfig, runtime: Runtime, resume: str | None = 'auto') -> Path | None:
    """Train STAR-Pose's SR network against the frozen pose net; returns the inference checkpoint."""
    from starpose_model.checkpoint import save_checkpoint
    from starpose_model.loss import CompoundLoss
    from starpose_model.star_pose import StarPoseSR

    mcfg, schedule = config.model.star_pose_config(), config.schedule
    train_set = build_dataset(config.data, 'train', mcfg, window=mcfg.window, seed=schedule.seed)
    pose_net = load_pose_net(config.pose_weights, mcfg.pose_arch).to(runtime.device)
    seed_everything(schedule.seed)  # the initial weights are part of the run
    task = SRTask(StarPoseSR(mcfg), CompoundLoss(pose_net, mcfg.loss_lambda), target=mcfg.target_frame)
    out_dir = Path(config.out_dir)
    summary = fit(task, train_set, schedule, out_dir, runtime, resume=resume, config=config)
    if not runtime.is_main:
        return None
    path = out_dir / FINAL_CHECKPOINT
    tmp = out_dir / f'.{FINAL_CHECKPOINT}.tmp'
    save_checkpoint(tmp, task.sr_net.cpu(), pose_net.cpu(), mcfg,
                    extra={'steps': summary['steps'], 'train_config': yaml.safe_dump(config.to_dict())})
    os.replace(tmp, path)
    print(f'[sr] {summary["steps"]} steps in {summary["seconds"]:.0f} s -> {path}')
    return path


def _parser() -> argparse.ArgumentParser:
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
    return parser


def main(argv: list[str] | None = None) -> None:
    """`starpose-train CONFIG [--stage all|pose|sr] [--set key=value ...] [--resume auto|none|PATH]`."""
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config, [*args.overrides, *([f'out_dir={args.out}'] if args.out else [])])
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f'starpose-train: error: {error}') from None
    if args.max_steps is not None:
        config = config.with_max_steps(args.max_steps)
    resume = None if args.resume == 'none' else args.resume
    if resume not in (None, 'auto') and args.stage == 'all':
        raise SystemExit('starpose-train: error: --resume PATH names one stage\'s state; give --stage pose or '
                         '--stage sr with it (each stage keeps its own state file)')
    runtime = setup_runtime(args.device)
    try:
        if args.stage == 'pose' or (args.stage == 'all' and not config.pose_weights.is_file()):
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
