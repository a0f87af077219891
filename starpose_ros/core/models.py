"""Which model file, which backend: the bundled default, the backend a file implies, cached exports.

The node, the bag replay and the benchmarks resolve a user's `model_path` + `backend` here, so
"empty means the bundled model" and "auto follows the file" mean the same everywhere:

| model file | backend `auto` |
| --- | --- |
| empty | the bundled default `starpose_small_real` (`assets/starpose_small_real.pt`), as below |
| a bundled model's name | its file in `assets/` (`BUNDLED_MODELS`), as below |
| `.onnx` | onnxruntime |
| `.pt` (StarPose checkpoint) | onnxruntime on its ONNX export, made once and cached by file hash |
| `.engine` / `.plan` | tensorrt |

An explicit backend wins, except that ONNX Runtime and TensorRT get a `.pt` through the same
cached export (TensorRT builds its engine from the ONNX).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from starpose_model.atomic import atomic_path

from .backends.base import BackendError
from .backends.tensorrt_engine import file_sha256

# The models shipped in the package, by name (as timm's name -> checkpoint registry); a model_path
# may give the name instead of a file.
BUNDLED_MODELS = {'starpose_small_real': Path(__file__).resolve().parents[1] / 'assets' / 'starpose_small_real.pt'}
DEFAULT_MODEL = 'starpose_small_real'
BUNDLED_MODEL = BUNDLED_MODELS[DEFAULT_MODEL]
BACKEND_CHOICES = ('auto', 'onnxruntime', 'torch', 'tensorrt')
_BY_SUFFIX = {'.onnx': 'onnxruntime', '.pt': 'onnxruntime', '.engine': 'tensorrt', '.plan': 'tensorrt'}
# what each kind of file is, and which backends read it (a .pt reaches ONNX Runtime and TensorRT as its export)
_KINDS = {'.onnx': ('an ONNX model', ('onnxruntime', 'tensorrt')),
          '.pt': ('a StarPose checkpoint', ('onnxruntime', 'torch', 'tensorrt')),
          '.engine': ('a TensorRT engine', ('tensorrt',)), '.plan': ('a TensorRT engine', ('tensorrt',))}


@dataclass(frozen=True)
class RuntimeOptions:
    """How a backend runs, as the node's parameters and the replay's flags say it (one set of names)."""

    device: str = 'cpu'
    threads: int = 2  # CPU threads (0: the runtime decides)
    max_batch: int = 16  # TensorRT: the engine's batch profile reaches it
    method: str = 'star_pose'  # torch only: 'bicubic' / 'resize' swap the SR net for a baseline
    engine_precision: str = 'fp16'
    engine_calibration_data: str = ''  # int8: .npy of real LR windows
    engine_cache_dir: str = ''  # empty: the backend's default cache folder
    force_engine_rebuild: bool = False


def backend_options(backend: str, runtime: RuntimeOptions) -> dict:
    """Constructor options of `backend` (option names differ per runtime; TensorRT is always CUDA)."""
    if backend == 'onnxruntime':
        return {'device': runtime.device, 'intra_op_threads': runtime.threads}
    if backend == 'torch':
        options = {'device': runtime.device, 'num_threads': runtime.threads}
        return options if runtime.method == 'star_pose' else {**options, 'method': runtime.method}
    options = {'max_batch': runtime.max_batch, 'precision': runtime.engine_precision,
               'force_engine_rebuild': runtime.force_engine_rebuild}
    if runtime.engine_calibration_data:
        options['calibration_data'] = runtime.engine_calibration_data
    if runtime.engine_cache_dir:
        options['cache_dir'] = runtime.engine_cache_dir
    return options


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/starpose` or `~/.cache/starpose`."""
    return Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'starpose'


def backend_for(model_path: Path, backend: str) -> str:
    """The backend that runs `model_path`: `backend` itself, or the file's with `auto`."""
    if backend not in BACKEND_CHOICES:
        raise BackendError(f'unknown backend {backend!r}; choose one of {BACKEND_CHOICES}')
    suffix = model_path.suffix.lower()
    if backend != 'auto':
        kind, readers = _KINDS.get(suffix, (None, ()))
        if kind is None:
            raise BackendError(f'{model_path}: not a model file StarPose reads (.onnx ONNX model, .pt checkpoint, '
                               '.engine TensorRT engine)')
        if backend not in readers:
            raise BackendError(f'{model_path} is {kind}, which backend {backend} cannot run; use backend auto or '
                               f'{" / ".join(readers)}')
        return backend
    if suffix not in _BY_SUFFIX:
        raise BackendError(f'{model_path}: cannot tell the backend from the suffix {suffix!r} '
                           f'(known: {", ".join(_BY_SUFFIX)}); set backend explicitly')
    return _BY_SUFFIX[suffix]


def exported_onnx(checkpoint: Path, folder: Path | None = None) -> Path:
    """The ONNX export of a `.pt` checkpoint, made once and cached under the checkpoint's hash."""
    # PyTorch is imported only here: an ONNX Runtime or TensorRT install without torch still loads .onnx files
    from starpose_model.checkpoint import load_inference_model
    from starpose_model.export import export_onnx

    if not checkpoint.is_file():
        raise BackendError(f'model file not found: {checkpoint}')
    folder = folder or default_cache_dir() / 'onnx'
    target = folder / f'{checkpoint.stem}.{file_sha256(checkpoint)[:12]}.onnx'
    if target.is_file():
        return target
    try:
        with atomic_path(target) as partial:
            export_onnx(load_inference_model(checkpoint), partial)
    except Exception as error:  # a checkpoint the exporter cannot handle: say so, offer the way around
        raise BackendError(f'cannot export {checkpoint} to ONNX ({type(error).__name__}: {error}); '
                           'backend torch runs the checkpoint without exporting') from error
    return target


def model_file(model_path: str | os.PathLike | None) -> Path:
    """The file a user's model path means: empty = the bundled default, a bundled model's name, else the path."""
    if not model_path:
        return BUNDLED_MODEL
    return BUNDLED_MODELS.get(str(model_path), Path(model_path))


def resolve_model(model_path: str | os.PathLike | None, backend: str = 'auto',
                  cache_dir: Path | None = None) -> tuple[Path, str]:
    """(file to load, backend name) for a user's model path (empty or a name = bundled) and backend (or auto)."""
    path = model_file(model_path)
    name = backend_for(path, backend)
    if name in ('onnxruntime', 'tensorrt') and path.suffix.lower() == '.pt':
        path = exported_onnx(path, cache_dir)
    return path, name
