"""The TensorRT engine cache: keys, file names, sidecars and the load-or-build decision (no GPU).

An engine is valid only for what it was built from and on, so the cache key holds all of it:
the ONNX file's hash, the precision plan (precision, FP32 scope pattern, hash of the INT8
calibration windows), the builder settings (workspace, batch profile) and the machine
(TensorRT version, GPU name, compute capability, SM count and total memory, since every Orin
module reports "Orin" at sm_87). The precision graphs TensorRT builds (`precision_graph`) are
derived from the FP32 export with `starpose_model.precision` and cached under the same key.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from starpose_model.atomic import atomic_write_bytes
from starpose_model.precision import (
    DEFAULT_FP32_SCOPE_PATTERN,
    PRECISIONS,
    graph_precision,
    quantize_int8,
    to_fp16,
)
from starpose_ros.core.backends.base import ModelInfo
from starpose_ros.core.backends.tensorrt_onnx import (
    BatchProfile,
    EngineError,
    EngineMismatchError,
    TensorSpec,
    load_onnx,
)

ENGINE_SUFFIX = '.engine'
SIDECAR_SUFFIX = '.json'
DEFAULT_CACHE_DIR = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'starpose' / 'engines'
CALIBRATION_BATCH = 8


@dataclass(frozen=True)
class BuildEnvironment:
    """The machine an engine is only valid on: TensorRT version and the GPU's identity and size."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    sm_count: int
    total_memory_mib: int


@dataclass(frozen=True)
class BuildOptions:
    """How to build: precision plan, batch profile and builder workspace."""

    precision: str = 'fp16'
    profile: BatchProfile = BatchProfile()
    workspace_mib: int = 1024
    fp32_scope_pattern: str = DEFAULT_FP32_SCOPE_PATTERN
    calibration_data: str | None = None  # .npy uint8 (N, T, h, w, 3) real LR windows, INT8 only

    def __post_init__(self):
        """Reject an unknown precision, an INT8 build without calibration data, a zero workspace."""
        if self.precision not in PRECISIONS:
            raise EngineError(f'unknown precision {self.precision!r}; expected one of {PRECISIONS}')
        if self.precision == 'int8' and not self.calibration_data:
            raise EngineError('precision int8 needs calibration_data: a .npy of real LR windows '
                              '(starpose-bag-eval --save-calibration writes one)')
        if self.workspace_mib < 1:
            raise EngineError(f'workspace_mib must be >= 1, got {self.workspace_mib}')


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine is built from and for; equal keys mean an engine can be reused."""

    onnx_sha256: str
    precision: str
    fp32_scope: str  # '' for FP32 (nothing is pinned)
    calibration_sha256: str  # '' unless INT8
    workspace_mib: int
    min_batch: int
    opt_batch: int
    max_batch: int
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    sm_count: int
    total_memory_mib: int

    @property
    def digest(self) -> str:
        """Short stable hash of all fields."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def file_name(self, stem: str) -> str:
        """Readable cache file name: model, precision, max batch, GPU architecture, TensorRT, digest."""
        sm = self.compute_capability.replace('.', '')
        return (f'{stem}.{self.precision}.b{self.max_batch}.sm{sm}.trt{self.tensorrt_version}.{self.digest}'
                f'{ENGINE_SUFFIX}')


# Fields an engine given by path may not differ in (the rest describe the engine itself).
PORTABILITY_FIELDS = ('tensorrt_version', 'gpu_name', 'compute_capability', 'sm_count', 'total_memory_mib')


def file_sha256(path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _calibration_sha256(options: BuildOptions) -> str:
    if options.precision != 'int8':
        return ''
    path = Path(str(options.calibration_data))
    if not path.is_file():
        raise EngineError(f'calibration data not found: {path}')
    return file_sha256(path)


def engine_key(onnx_sha256: str, env: BuildEnvironment, options: BuildOptions) -> EngineKey:
    """The cache key of building the ONNX file with `options` in `env` (hashes the calibration file)."""
    return EngineKey(onnx_sha256, options.precision, '' if options.precision == 'fp32' else options.fp32_scope_pattern,
                     _calibration_sha256(options), options.workspace_mib, options.profile.min, options.profile.opt,
                     options.profile.max, env.tensorrt_version, env.gpu_name, env.compute_capability, env.sm_count,
                     env.total_memory_mib)


def timing_cache_path(cache_dir, env: BuildEnvironment) -> Path:
    """One timing cache per TensorRT version and GPU (name, SMs, memory), shared by all models."""
    identity = json.dumps(dataclasses.asdict(env), sort_keys=True).encode()
    sm = env.compute_capability.replace('.', '')
    return Path(cache_dir) / f'timing.sm{sm}.trt{env.tensorrt_version}.{hashlib.sha256(identity).hexdigest()[:8]}.cache'


def sidecar_path(engine_path) -> Path:
    """The JSON metadata file next to an engine (`model.engine` -> `model.engine.json`)."""
    return Path(f'{engine_path}{SIDECAR_SUFFIX}')


def write_engine(engine_path, engine_bytes: bytes, key: EngineKey, metadata: dict[str, str],
                 buffers: list[TensorSpec] | None = None) -> Path:
    """Write the engine and its sidecar atomically."""
    engine_path = Path(engine_path)
    atomic_write_bytes(engine_path, bytes(engine_bytes))
    sidecar = {**dataclasses.asdict(key), 'engine_sha256': hashlib.sha256(bytes(engine_bytes)).hexdigest(),
               'model_metadata': metadata, 'built_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
               'io': [{'name': b.name, 'dtype': b.dtype.name, 'max_shape': list(b.shape), 'input': b.is_input}
                      for b in buffers or []]}
    atomic_write_bytes(sidecar_path(engine_path), json.dumps(sidecar, indent=2).encode())
    return engine_path


def read_sidecar(engine_path) -> dict:
    """Read an engine's sidecar, raising EngineError if it is missing or not JSON."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise EngineError(f'{engine_path}: no metadata sidecar {path.name}; cannot tell what it was built for')
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise EngineError(f'{path}: unreadable engine metadata ({error})') from error
    if not isinstance(data, dict):
        raise EngineError(f'{path}: engine metadata must be a JSON object')
    return data


def engine_problems(engine_path, expected: dict) -> list[str]:
    """Why the engine at `engine_path` cannot be used for `expected` fields (empty: usable).

    Checks that the file exists, its sidecar is readable, the file hash matches the sidecar
    (truncated or overwritten files) and every expected field (model hash, TensorRT, GPU, ...).
    """
    path = Path(engine_path)
    if not path.is_file():
        return [f'{path} does not exist']
    try:
        sidecar = read_sidecar(path)
    except EngineError as error:
        return [str(error)]
    problems = []
    if sidecar.get('engine_sha256') != file_sha256(path):
        problems.append(f'{path}: file content does not match its metadata (truncated or replaced)')
    for field, value in expected.items():
        found = sidecar.get(field)
        if found != value:
            problems.append(f'{field}: engine has {found!r}, here {value!r}')
    return problems


@dataclass(frozen=True)
class EngineChoice:
    """What `load_or_build_engine` will do: `load` or `build` the engine at `path`, and why."""

    action: str
    path: Path
    reason: str
    from_cache: bool


def choose_engine(onnx_path, engine_path, cache_dir, env: BuildEnvironment, options: BuildOptions,
                  force_rebuild: bool = False, onnx_sha256: str | None = None) -> EngineChoice:
    """Decide between loading an engine and building one; raise when neither is allowed.

    * `engine_path` given: that file is the engine. It is loaded if its sidecar says it was built
      here (same TensorRT, GPU, compute capability, and the same ONNX when one is given); an
      engine built elsewhere raises EngineMismatchError unless `force_rebuild`, which rebuilds it
      from `onnx_path` into the same path. A missing file is built from `onnx_path`.
    * otherwise the engine lives in `cache_dir` under a name keyed by ONNX hash, TensorRT,
      GPU, compute capability, precision and profile: a valid entry is loaded, a missing or
      damaged one (re)built. `force_rebuild` always rebuilds.
    """
    if onnx_path is None and engine_path is None:
        raise EngineError('neither an ONNX model nor an engine file was given')
    if onnx_path is not None and onnx_sha256 is None:
        if not Path(onnx_path).is_file():
            raise EngineError(f'ONNX model not found: {onnx_path}')
        onnx_sha256 = file_sha256(onnx_path)
    if engine_path is not None:
        path = Path(engine_path)
        expected = {field: getattr(env, field) for field in PORTABILITY_FIELDS}
        if onnx_sha256 is not None:
            expected['onnx_sha256'] = onnx_sha256
        if force_rebuild:
            _require_onnx(onnx_path, path, 'force_engine_rebuild is set')
            return EngineChoice('build', path, 'force_engine_rebuild is set', from_cache=False)
        if not path.exists():
            _require_onnx(onnx_path, path, 'the engine file does not exist')
            return EngineChoice('build', path, 'engine file does not exist yet', from_cache=False)
        problems = engine_problems(path, expected)
        if problems:
            hint = (f'set force_engine_rebuild to rebuild it from {onnx_path}' if onnx_path is not None
                    else 'give the ONNX model and set force_engine_rebuild to rebuild it here')
            raise EngineMismatchError(f'{path} cannot be used on this machine:\n  ' + '\n  '.join(problems)
                                      + f'\n{hint}.')
        return EngineChoice('load', path, 'engine metadata matches this machine', from_cache=False)
    key = engine_key(onnx_sha256, env, options)
    path = Path(cache_dir) / key.file_name(Path(onnx_path).stem)
    if force_rebuild:
        return EngineChoice('build', path, 'force_engine_rebuild is set', from_cache=True)
    if not path.exists():
        return EngineChoice('build', path, 'no cached engine for this model, GPU, TensorRT and precision', True)
    problems = engine_problems(path, dataclasses.asdict(key))
    if problems:
        return EngineChoice('build', path, 'cached engine is damaged: ' + '; '.join(problems), from_cache=True)
    return EngineChoice('load', path, 'cached engine matches', from_cache=True)


def _require_onnx(onnx_path, engine_path, why: str) -> None:
    if onnx_path is None:
        raise EngineError(f'{engine_path}: {why} but no ONNX model was given to build from')


def after_failed_load(choice: EngineChoice, onnx_path, force_rebuild: bool, reason: str) -> EngineChoice:
    """What to do when TensorRT could not deserialize the chosen engine.

    A cache entry is ours to rebuild; a user-given engine is only overwritten with
    `force_rebuild`. Without an ONNX model there is nothing to rebuild from: EngineError.
    """
    message = f'{choice.path}: TensorRT could not deserialize the engine ({reason})'
    if onnx_path is None:
        raise EngineError(f'{message}; no ONNX model was given to rebuild from')
    if choice.from_cache or force_rebuild:
        return EngineChoice('build', choice.path, message, choice.from_cache)
    raise EngineError(f'{message}; set force_engine_rebuild to rebuild it from {onnx_path}')


def load_calibration_windows(path, model_info: ModelInfo) -> np.ndarray:
    """Load INT8 calibration LR windows: uint8 (N, T, h, w, 3) with N >= 1, for this model's input."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(f'calibration data not found: {path}')
    try:
        windows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise EngineError(f'{path}: not a .npy array of LR windows ({error})') from error
    if windows.dtype != np.uint8 or windows.shape[1:] != model_info.input_shape or not len(windows):
        raise EngineError(f'{path}: calibration windows are {windows.dtype} {windows.shape}, expected uint8 '
                          f'(N >= 1, {", ".join(str(s) for s in model_info.input_shape)})')
    return windows


def precision_graph(onnx_path, options: BuildOptions, cache_dir, model_info: ModelInfo) -> Path:
    """The strongly typed ONNX file TensorRT builds for `options.precision`, derived once and cached.

    An FP32 export is converted (FP16) or quantised (INT8) into `cache_dir`, named by the same
    fields that key the engine; a file that already carries a precision plan is used as it is.
    """
    model = load_onnx(onnx_path)
    have = graph_precision(model)
    if have != 'fp32' or options.precision == 'fp32':
        if have != options.precision:
            raise EngineError(f'{onnx_path} is an {have} graph but precision {options.precision} was asked; '
                              'give the FP32 export (starpose-export) to derive other precisions')
        return Path(onnx_path)
    plan = json.dumps([file_sha256(onnx_path), options.precision, options.fp32_scope_pattern,
                       _calibration_sha256(options)]).encode()
    digest = hashlib.sha256(plan).hexdigest()[:12]
    target = Path(cache_dir) / f'{Path(onnx_path).stem}.{options.precision}.{digest}.onnx'
    if target.is_file():
        return target
    if options.precision == 'int8':
        windows = load_calibration_windows(options.calibration_data, model_info)
    try:
        if options.precision == 'fp16':
            derived = to_fp16(model, options.fp32_scope_pattern)
        else:
            derived = quantize_int8(model, windows, options.fp32_scope_pattern, CALIBRATION_BATCH)
        atomic_write_bytes(target, derived.SerializeToString())
        onnx.checker.check_model(str(target))
    except Exception as error:  # the ONNX / ONNX Runtime tools raise their own types: one line with the reason
        target.unlink(missing_ok=True)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EngineError(f'{onnx_path}: no {options.precision} graph: {reason}') from error
    return target
