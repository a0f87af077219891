"""A run's state on disk and its boundaries: the state save/load pair, atomic writes, RNG states, stop signals.

Exact resume needs three things besides the weights: the RNG states of every rank, the data
position, and the same settings (`check_resumable` refuses a state saved with other ones).
`save_state` writes what `load_state` reads; a state is written to a temporary and renamed, so a
crash or a full disk never leaves a truncated one; a stop signal saves one at the next step boundary.
"""
from __future__ import annotations

import random
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from starpose_model.atomic import atomic_path
from starpose_training.runtime import Runtime
from starpose_training.train_config import ConfigError, TrainConfig


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to `path` so that a crash mid-write never leaves a truncated file behind.

    A failed write (a full disk surfaces as torch's `RuntimeError: [enforce fail at
    inline_container.cc]` or as an OSError) removes the temporary file, keeps the previous `path`
    as it was, and raises OSError naming the file.
    """
    try:
        with atomic_path(path) as partial:
            torch.save(obj, partial)
    except (OSError, RuntimeError) as error:
        reason = 'no space left on the device' if 'No space' in str(error) or getattr(error, 'errno', None) == 28 \
            else str(error).strip().splitlines()[0]
        raise OSError(f'writing {path} failed ({reason}); the previous {path.name} is unchanged') from None


def rng_states() -> dict:
    """Python, numpy, torch (and CUDA) RNG states of this process."""
    states = {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what `rng_states` saved."""
    random.setstate(states['python'])
    np.random.set_state(states['numpy'])
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


# Settings that may change between a run and its resume without changing what it computes.
RESUME_FREE_KEYS = frozenset({'out_dir', 'max_steps', 'num_workers', 'threads', 'log_every', 'image_every',
                              'checkpoint_every'})


def config_differences(saved: Any, current: Any, prefix: str = '') -> list[str]:
    """Dotted keys whose values differ between two configs (`RESUME_FREE_KEYS` ignored)."""
    if not (isinstance(saved, dict) and isinstance(current, dict)):
        return [] if saved == current else [prefix or '(config)']
    differences = []
    for key in sorted(set(saved) | set(current), key=str):
        if key in RESUME_FREE_KEYS:
            continue
        differences += config_differences(saved.get(key), current.get(key), f'{prefix}.{key}' if prefix else str(key))
    return differences


def check_resumable(state: dict, state_path: Path, task_name: str, config: TrainConfig | None) -> None:
    """Refuse a state saved by another stage or with other settings, naming the difference and the way out.

    The saved config is parsed like a YAML file's, so a state that spelt a default out (or one saved
    as the raw YAML mapping, before configs were typed) compares equal to the same settings.
    """
    way_out = 'pass --resume none to start over, or choose another --out'
    if state.get('task') not in (None, task_name):
        raise ValueError(f'{state_path} is the training state of the {state["task"]} stage, not {task_name}; '
                         f'{way_out}')
    if config is None or state.get('config') is None:
        return
    try:
        saved = TrainConfig.from_dict(state['config']).to_dict()
    except ConfigError as error:
        raise ValueError(f'{state_path} holds settings this version does not read ({error}); {way_out}') from None
    differences = config_differences(saved, config.to_dict())
    if differences:
        shown = ', '.join(differences[:6]) + (' ...' if len(differences) > 6 else '')
        raise ValueError(f'{state_path} was saved by a run with other settings ({shown}): resuming would mix the '
                         f'two runs; {way_out}')


def save_state(path: Path, objects: dict[str, Any], position: tuple[int, int, int], task_name: str,
               config: TrainConfig | None, runtime: Runtime) -> None:
    """Write `objects`' state dicts, every rank's RNG states, the data position and the settings (rank 0 writes).

    `objects`: model, optimiser, scheduler, grad scaler by name; `position`: (step, epoch, samples
    done in it). Every rank must call it (the RNG states are gathered).
    """
    rngs = [None] * runtime.world_size
    if runtime.distributed:
        dist.all_gather_object(rngs, rng_states())
    else:
        rngs = [rng_states()]
    if runtime.is_main:
        step, epoch, samples_done = position
        atomic_save({'step': step, 'epoch': epoch, 'samples_done': samples_done,
                     **{key: target.state_dict() for key, target in objects.items()}, 'rng': rngs,
                     'config': None if config is None else config.to_dict(), 'task': task_name}, path)


def load_state(path: Path, objects: dict[str, Any], task_name: str, config: TrainConfig | None,
               rank: int) -> tuple[int, int, int]:
    """Load what `save_state` wrote into `objects` and this rank's RNGs; returns (step, epoch, samples done)."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as error:  # truncated, not a torch file, another program's pickle
        raise ValueError(f'{path} is not a readable training state ({type(error).__name__}); pass '
                         '--resume none to start over, or choose another --out') from None
    if not isinstance(state, dict) or 'model' not in state:
        raise ValueError(f'{path} is not a StarPose training state; pass --resume none to start over')
    check_resumable(state, path, task_name, config)
    for key, target in objects.items():
        target.load_state_dict(state[key])
    set_rng_states(state['rng'][rank] if rank < len(state['rng']) else state['rng'][0])
    return state['step'], state['epoch'], state['samples_done']


class TrainingStopped(RuntimeError):
    """SIGINT/SIGTERM ended a run early, after saving its state (the same command continues it)."""


class StopRequest:
    """Turns SIGINT/SIGTERM into "finish this step, save the state, stop" (a second signal acts at once).

    Saving at a step boundary keeps exact resume: the state equals a checkpoint taken there.
    DataLoader workers ignore the signals (`ignore_stop_signals`), so Ctrl-C in a terminal, which
    reaches the whole process group, does not kill them under the main process.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        self.signal_name = signal.Signals(signum).name
        for other, handler in self._previous.items():
            signal.signal(other, handler)

    def requested(self, distributed: bool, device: torch.device) -> bool:
        """Whether to stop after this step; with DDP every rank agrees (or their collectives would hang)."""
        wanted = self.signal_name is not None
        if distributed:
            flag = torch.tensor(float(wanted), device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            wanted = bool(flag.item())
        return wanted


def ignore_stop_signals(_worker_id: int) -> None:
    """DataLoader worker start-up: the main process alone decides when a run stops."""
    for signum in StopRequest.SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
