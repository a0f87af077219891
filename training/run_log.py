"""What a run reports (rank 0): one JSON line per logged step, TensorBoard scalars and pictures, a progress bar.

`metrics.jsonl` holds each logged step once: a resumed run first drops the lines written after
the state it resumes from (`truncate_metrics`).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from starpose_training.runtime import Runtime, unwrap
from starpose_training.train_config import Schedule

METRICS_FILE = 'metrics.jsonl'


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop log lines written after the state we resume from, so the log has each step once."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line and json.loads(line)['step'] <= last_step]
    path.write_text(''.join(f'{line}\n' for line in lines))


class RunLog:
    """Scalars every `log_every` steps (and at the last), pictures every `image_every`, progress every step."""

    def __init__(self, out_dir: Path, task, schedule: Schedule, runtime: Runtime, total_steps: int, step: int):
        self.task, self.schedule, self.runtime, self.total_steps = task, schedule, runtime, total_steps
        self.writer = self.metrics = None
        if runtime.is_main:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(out_dir / 'tensorboard'))
            self.metrics = (out_dir / METRICS_FILE).open('a')
        self.progress = tqdm(total=total_steps, initial=step, desc=task.name, disable=not runtime.is_main,
                             dynamic_ncols=True, mininterval=2.0)

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self.progress.close()
        if self.runtime.is_main:
            self.metrics.close()
            self.writer.close()

    def after_step(self, step: int, epoch: int, lr: float, loss: torch.Tensor, parts: dict, model: torch.nn.Module,
                   batch: dict) -> None:
        """Record optimiser step `step` as the schedule asks (every rank calls it: the scalars are averaged)."""
        if step % self.schedule.log_every == 0 or step == self.total_steps:
            values = {'loss': loss.detach(), **{k: v.detach() for k, v in parts.items()}}
            record = self._scalars(values, step, epoch, lr)
            if record is not None:
                self.progress.set_postfix(loss=f'{record["loss"]:.4f}', lr=f'{record["lr"]:.1e}')
        if self.runtime.is_main and self.schedule.image_every and step % self.schedule.image_every == 0:
            unwrap(model).eval()
            self.writer.add_image(f'{self.task.name}/samples', self.task.pictures(batch), step)
            unwrap(model).train()
        self.progress.update(1)

    def _scalars(self, values: dict, step: int, epoch: int, lr: float) -> dict | None:
        """Average the values over ranks; rank 0 appends them to metrics.jsonl and TensorBoard (its record)."""
        if self.runtime.distributed:
            for value in values.values():
                dist.all_reduce(value, op=dist.ReduceOp.AVG)
        if not self.runtime.is_main:
            return None
        record = {'step': step, 'epoch': epoch, 'lr': lr, **{k: float(v) for k, v in values.items()}}
        self.metrics.write(json.dumps(record) + '\n')
        self.metrics.flush()
        for key, value in record.items():
            if key not in ('step', 'epoch'):
                self.writer.add_scalar(f'{self.task.name}/{key}', value, step)
        return record
