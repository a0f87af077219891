"""Training configurations: YAML files, `extends:` inheritance, `--set` overrides, checks, the schedule.

`check_config` refuses unknown keys and wrong types, naming the key (nanoGPT's configurator
does the same): a misspelt key (`schedul.steps`) is an error, never a silently ignored setting.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / 'configs'
PAPER_EPOCHS = 300
PAPER_MILESTONES = (170, 260)


def _merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_config_path(name_or_path: str | os.PathLike) -> Path:
    """A config path as given, or the name of a shipped config (`paper_64x48`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix == '.yaml' else f'{path.name}.yaml')
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(f'training config {name_or_path!s} not found (nor {shipped})')


def load_config(name_or_path: str | os.PathLike, overrides: list[str] | None = None) -> dict:
    """Read a YAML config, following `extends:` (relative to the file), then apply overrides."""
    path = resolve_config_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f'{path}: invalid YAML: {err}') from err
    if not isinstance(raw, dict):
        raise ValueError(f'{path}: a training config must be a mapping, got {type(raw).__name__}')
    parent = raw.pop('extends', None)
    config = _merge(load_config(path.parent / parent), raw) if parent else raw
    for item in overrides or []:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise ValueError(f'override {item!r} must look like section.key=value')
        node = config
        *parents, leaf = key.split('.')
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f'override {item!r}: {part!r} is not a section')
        node[leaf] = yaml.safe_load(value)
    return config


# The sections a training config may hold and their keys (`schedule` / `pose.train` are `Schedule`
# fields, `model.overrides` `StarPoseConfig` fields, `*.augment` `AugmentConfig` fields).
CONFIG_KEYS = {
    '': ('out_dir', 'model', 'pose', 'data', 'schedule'),
    'model': ('name', 'ablation', 'overrides'),
    'pose': ('checkpoint', 'augment', 'train'),
    'data': ('root', 'train', 'sources', 'augment', 'blur_sigma', 'cache_frames'),
}


def check_config(config: dict) -> None:
    """Refuse unknown keys anywhere in a training config, naming the key and the known ones."""
    import dataclasses

    from starpose_model.config import StarPoseConfig
    from starpose_training.augment import AugmentConfig

    def check(section: object, where: str, known) -> None:
        if section is None:
            return
        if not isinstance(section, dict):
            raise ValueError(f'training config: {where or "the config"} must be a mapping, got {section!r}')
        unknown = sorted(set(section) - set(known), key=str)
        if unknown:
            name = ', '.join(f'{where}.{key}' if where else str(key) for key in unknown)
            raise ValueError(f'training config: unknown key(s) {name}; known in {where or "the top level"}: '
                             f'{", ".join(sorted(known))}')

    for where, known in CONFIG_KEYS.items():
        check(config if not where else config.get(where), where, known)
    fields = {f.name for f in dataclasses.fields(Schedule)}
    check(config.get('schedule'), 'schedule', fields)
    pose, data = config.get('pose') or {}, config.get('data') or {}
    check(pose.get('train'), 'pose.train', fields)
    check((config.get('model') or {}).get('overrides'), 'model.overrides',
          {f.name for f in dataclasses.fields(StarPoseConfig)})
    augment_fields = {f.name for f in dataclasses.fields(AugmentConfig)}
    for where, value in (('data.augment', data.get('augment')), ('pose.augment', pose.get('augment'))):
        if isinstance(value, dict):
            check(value, where, augment_fields)


@dataclass
class Schedule:
    """The optimisation recipe; defaults are the paper's (Adam 1e-3, x0.1 at 170/260 of 300)."""

    epochs: int = PAPER_EPOCHS
    steps: int | None = None                # run length in optimiser steps instead of epochs (SR style)
    batch_size: int = 32
    lr: float = 1e-3
    milestones: list[float] | None = None   # epochs; None = the paper's 170/300, 260/300 of the run
    gamma: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    amp: str = 'auto'                       # auto | bf16 | fp16 | off
    num_workers: int = 2
    checkpoint_every: int = 500             # steps
    log_every: int = 10                     # steps
    image_every: int = 500                  # steps; 0 = never
    max_steps: int | None = None            # stop early (time-bounded runs, tests)
    threads: int | None = None              # torch.set_num_threads on CPU

    @classmethod
    def from_dict(cls, values: dict | None) -> Schedule:
        """Build from a config section, rejecting unknown keys by name."""
        values = dict(values or {})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f'unknown schedule keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}')
        return cls(**values)

    def run_steps(self, steps_per_epoch: int) -> int:
        """Length of the run in optimiser steps (`steps`, else `epochs` whole epochs)."""
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch

    def milestone_steps(self, steps_per_epoch: int) -> list[int]:
        """Optimiser steps at which the LR is multiplied by `gamma`.

        Given `milestones` are epochs; by default the paper's 170 and 260 of 300 epochs are
        scaled to the run's length, so a shorter run keeps the same shape of schedule.
        """
        if self.milestones is not None:
            return [round(m * steps_per_epoch) for m in self.milestones]
        return [round(m * self.run_steps(steps_per_epoch) / PAPER_EPOCHS) for m in PAPER_MILESTONES]
