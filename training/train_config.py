"""Training configurations: YAML files, `extends:` inheritance, `--set` overrides, parsed into typed sections.

One loader (`load_config`) reads a YAML file, follows `extends:`, applies `--set` overrides and
builds a frozen `TrainConfig`. Like nanoGPT's configurator it refuses what it does not know: an
unknown key anywhere (`schedul.steps`, `data.augment.shift`) is an error naming the key, the
closest known one and all known ones, and a value of the wrong type names the key, the expected
and the given type. A misspelt key is never a silently ignored setting.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from starpose_model.config import StarPoseConfig, get_config
from starpose_training.augment import AugmentConfig

CONFIG_DIR = Path(__file__).resolve().parent / 'configs'
PAPER_EPOCHS = 300
PAPER_MILESTONES = (170, 260)
POSE_WEIGHTS_FILE = 'pose_net.pth'


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the key (one line on the command line)."""


# --------------------------------------------------------------------------------------------
# The sections, as the YAML files spell them.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    """The optimisation recipe of `schedule` and `pose.train`.

    The defaults are the paper's: Adam 1e-3, x0.1 at epochs 170 and 260 of 300.
    """

    epochs: int = PAPER_EPOCHS
    steps: int | None = None                 # run length in optimiser steps instead of epochs (SR style)
    batch_size: int = 32
    lr: float = 1e-3
    milestones: tuple[float, ...] | None = None  # epochs; None = the paper's 170/300, 260/300 of the run
    gamma: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    amp: Literal['auto', 'bf16', 'fp16', 'off'] = 'auto'
    num_workers: int = 2
    checkpoint_every: int = 500              # steps
    log_every: int = 10                      # steps
    image_every: int = 500                   # steps; 0 = never
    max_steps: int | None = None             # stop early (time-bounded runs, tests)
    threads: int | None = None               # torch.set_num_threads on CPU

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


@dataclass(frozen=True)
class ModelSection:
    """`model`: a `starpose_model.config` preset, an ablation of Table 4 and `StarPoseConfig` field overrides."""

    name: str
    ablation: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict, metadata={'fields_of': StarPoseConfig})

    def __post_init__(self) -> None:
        if 'name' in self.overrides:  # get_config would see two names and fail with a TypeError
            raise ConfigError('training config: model.overrides.name is not an override; the preset is model.name')
        self.star_pose_config()  # an unknown preset or ablation, a bad value: refused while loading

    def star_pose_config(self) -> StarPoseConfig:
        """The network configuration this section selects."""
        return get_config(self.name, self.ablation, **self.overrides)


@dataclass(frozen=True)
class PoseSection:
    """`pose`: the frozen pose net's weights, and optionally a schedule to train them here first."""

    checkpoint: str | None = None            # None: OUT/pose/pose_net.pth
    augment: bool | AugmentConfig | None = None  # None: as `data.augment`
    train: Schedule | None = None


@dataclass(frozen=True)
class DataSource:
    """One entry of `data.sources`: a PoseTrack-format set under `root`, repeated `repeat` times an epoch."""

    root: str = '.'
    train: str | None = None
    repeat: int = 1


@dataclass(frozen=True)
class DataSection:
    """`data`: where the training windows come from, their augmentation and degradation."""

    root: str = '.'                          # frame paths in the JSON are relative to it
    train: str | None = None                 # annotation dir or JSON, relative to `root`
    sources: tuple[DataSource, ...] | None = None  # instead of root/train: several sets in one epoch
    augment: bool | AugmentConfig = True     # the paper's augmentation, none, or its own ranges
    blur_sigma: float | None = None          # None = 0.4 x scale
    cache_frames: int = 64                   # decoded frames kept per worker

    def __post_init__(self) -> None:
        if self.sources is not None and not self.sources:
            raise ConfigError('training config: data.sources must be a non-empty list of {root, train, repeat}')


@dataclass(frozen=True)
class TrainConfig:
    """A whole training config: what `starpose-train` runs, and what a training state is compared by."""

    model: ModelSection
    out_dir: str | None = None               # None: outputs/train/<config name> (set by `load_config`)
    pose: PoseSection = field(default_factory=PoseSection)
    data: DataSection = field(default_factory=DataSection)
    schedule: Schedule = field(default_factory=Schedule)

    @classmethod
    def from_dict(cls, values: Mapping) -> TrainConfig:
        """Parse a config mapping (a YAML file's, a saved state's), refusing unknown keys and wrong types."""
        return _build(cls, values, '')

    def to_dict(self) -> dict:
        """Plain data (lists, dicts, scalars) that `from_dict` reads back: for YAML and training states."""
        return _plain(self)

    @property
    def pose_weights(self) -> Path:
        """The pose net's weights file: `pose.checkpoint`, else the pose stage's output in OUT/pose/."""
        if self.pose.checkpoint:
            return Path(self.pose.checkpoint)
        return Path(self.out_dir) / 'pose' / POSE_WEIGHTS_FILE

    def with_max_steps(self, max_steps: int) -> TrainConfig:
        """A copy whose stages (SR and pose) stop after `max_steps` optimiser steps."""
        pose_train = None if self.pose.train is None else dataclasses.replace(self.pose.train, max_steps=max_steps)
        return dataclasses.replace(self, schedule=dataclasses.replace(self.schedule, max_steps=max_steps),
                                   pose=dataclasses.replace(self.pose, train=pose_train))


# --------------------------------------------------------------------------------------------
# The one loader: YAML -> mapping -> typed sections, refusing unknown keys and wrong types.
# --------------------------------------------------------------------------------------------

def resolve_config_path(name_or_path: str | os.PathLike) -> Path:
    """A config path as given, or the name of a shipped config (`paper_64x48`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix == '.yaml' else f'{path.name}.yaml')
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(f'training config {name_or_path!s} not found (nor {shipped})')


def load_config(name_or_path: str | os.PathLike, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config, following `extends:` (relative to the file), apply `key.sub=value` overrides, parse it."""
    path = resolve_config_path(name_or_path)
    values = read_yaml(path)
    for item in overrides or []:
        _override(values, item)
    values.setdefault('out_dir', f'outputs/train/{path.stem}')
    return TrainConfig.from_dict(values)


def read_yaml(path: Path) -> dict:
    """The mapping of a YAML config with its `extends:` chain merged in (the file's own keys win)."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f'{path}: invalid YAML: {err}') from err
    if not isinstance(raw, dict):
        raise ConfigError(f'{path}: a training config must be a mapping, got {type(raw).__name__}')
    parent = raw.pop('extends', None)
    return _merge(read_yaml(resolve_config_path(path.parent / parent)), raw) if parent else raw


def _merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _override(values: dict, item: str) -> None:
    """Apply one `--set section.key=value` (the value is YAML: `3`, `1e-3`, `[1, 2]`, `null`)."""
    key, sep, value = item.partition('=')
    if not sep or not key:
        raise ConfigError(f'override {item!r} must look like section.key=value')
    node = values
    *parents, leaf = key.split('.')
    for part in parents:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f'override {item!r}: {part!r} is not a section')
    node[leaf] = yaml.safe_load(value)


def _build(cls: type, values: object, where: str):
    """An instance of the dataclass `cls` from a config mapping at `where` (a dotted key; '' = the top)."""
    kwargs = _fields(cls, values, where)
    for missing in (f.name for f in dataclasses.fields(cls) if f.name not in kwargs and _required(f)):
        raise ConfigError(f'training config: {_join(where, missing)} is missing')
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as error:  # StarPoseConfig's and the sections' own value checks
        raise ConfigError(f'training config: {where or "the config"}: {error}') from None


def _fields(cls: type, values: object, where: str) -> dict:
    """The checked (and converted) values of `cls` fields in a mapping; unknown keys and wrong types refused."""
    if not isinstance(values, Mapping):
        raise ConfigError(f'training config: {where or "the config"} must be a mapping, got '
                          f'{type(values).__name__} {values!r}')
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [str(key) for key in values if key not in fields]
    if unknown:
        raise ConfigError(_unknown_keys(unknown, sorted(fields), where))
    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in values.items():
        nested = fields[key].metadata.get('fields_of')
        checked[key] = (_fields(nested, value or {}, _join(where, key)) if nested
                        else _check(value, hints[key], _join(where, key)))
    return checked


def _unknown_keys(unknown: list[str], known: list[str], where: str) -> str:
    """'unknown key data.roott (did you mean data.root?); known in data: ...'."""
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        named.append(_join(where, key) + (f' (did you mean {_join(where, close[0])}?)' if close else ''))
    return (f'training config: unknown key{"s" if len(unknown) > 1 else ""} {", ".join(named)}; '
            f'known in {where or "the top level"}: {", ".join(known)}')


def _check(value: object, hint: object, where: str):
    """`value` as the type `hint` wants it (int -> float, list -> tuple, mapping -> dataclass), else a ConfigError."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        hint = next((option for option in typing.get_args(hint) if _matches(value, option)), hint)
    elif dataclasses.is_dataclass(hint) and value is None:
        value = {}  # an empty section (`pose:` in YAML) is its defaults
    if not _matches(value, hint):
        given = 'null' if value is None else type(value).__name__
        raise ConfigError(f'training config: {where} must be {_type_name(hint)}, got {given} {value!r}')
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        kinds = [args[0]] * len(value) if args[-1] is Ellipsis else args
        pairs = enumerate(zip(value, kinds, strict=True))
        return tuple(_check(item, kind, f'{where}[{k}]') for k, (item, kind) in pairs)
    return float(value) if hint is float else value


def _matches(value: object, hint: object) -> bool:
    """Whether `value` has the shape `hint` asks for (the items of a list are checked after)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return False  # none of its options matched
    if origin is Literal:
        return value in args
    if origin is tuple:
        return isinstance(value, (list, tuple)) and (args[-1] is Ellipsis or len(value) == len(args))
    if dataclasses.is_dataclass(hint):
        return isinstance(value, Mapping)
    if isinstance(value, bool):
        return hint is bool  # YAML's true is no number
    return isinstance(value, (int, float)) if hint is float else isinstance(value, hint)


def _type_name(hint: object) -> str:
    """How a type reads in an error message (`int or null`, `a list of 2 float`, `one of 'auto', 'off'`)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return ' or '.join(_type_name(a) for a in args)
    if origin is Literal:
        return 'one of ' + ', '.join(repr(a) for a in args)
    if origin is tuple:
        count = '' if args[-1] is Ellipsis else f'{len(args)} '
        return f'a list of {count}{_type_name(args[0])}'
    if dataclasses.is_dataclass(hint):
        return f'a mapping of {hint.__name__} fields'
    return 'null' if hint is type(None) else getattr(hint, '__name__', str(hint))


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _join(where: str, key: str) -> str:
    return f'{where}.{key}' if where else key


def _plain(value: object):
    """Dataclasses as dicts, tuples as lists, all the way down (what YAML and `from_dict` read)."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
