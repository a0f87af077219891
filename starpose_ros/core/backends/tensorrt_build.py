"""Build and load strongly typed TensorRT engines (needs tensorrt and pycuda: a CUDA machine).

Importing this module imports TensorRT and refuses, in one line, a version outside
`SUPPORTED_TENSORRT_TEXT`; callers import it lazily (`import_gpu_stack`) so the rest of the
project runs without a GPU. The code keeps to the API that TensorRT 10.3+ and 11.x share
(checked against `tensorrt-stubs` by mypy, see docs/tensorrt.md): the network is strongly
typed, so the precision plan is the ONNX file's own (FP32, FP16 with FP32 attention, or INT8
Q/DQ) and no builder precision flag, layer precision or calibrator is used.

TensorRT keeps one global logger, so `LOGGER` is the only one and `--verbose` changes its
severity; the standard plugins are registered once at import.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pycuda.driver as cuda
import tensorrt as trt

from starpose_model.atomic import atomic_write_bytes
from starpose_model.contract import onnx_metadata
from starpose_ros.core.backends.tensorrt_engine import (
    BuildEnvironment,
    BuildOptions,
    EngineChoice,
    after_failed_load,
    choose_engine,
    engine_key,
    file_sha256,
    precision_graph,
    read_sidecar,
    timing_cache_path,
    write_engine,
)
from starpose_ros.core.backends.tensorrt_onnx import (
    EngineError,
    TensorSpec,
    UnsupportedOnnxError,
    check_onnx_for_tensorrt,
    check_tensorrt_version,
    model_info_from_metadata,
    onnx_io_specs,
    plan_buffers,
    profile_shapes,
)

LOG = logging.getLogger(__name__)

check_tensorrt_version(getattr(trt, '__version__', ''))
cuda.init()
LOGGER = trt.Logger(trt.Logger.WARNING)
if not trt.init_libnvinfer_plugins(LOGGER, ''):
    LOG.warning('TensorRT could not register its standard plugins; graphs that need them will not parse')


def set_verbose(verbose: bool) -> None:
    """Show TensorRT's INFO/VERBOSE messages (the global logger's severity)."""
    LOGGER.min_severity = trt.Logger.VERBOSE if verbose else trt.Logger.WARNING


def first_line(error: BaseException) -> str:
    """The reason of an exception on one line (pycuda and TensorRT messages span several)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f'{type(error).__name__}: {lines[0] if lines else "no message"}'


@contextlib.contextmanager
def reported_as_engine_error(what: str) -> Iterator[None]:
    """Turn any TensorRT or pycuda exception inside into EngineError(`what: reason`), one line."""
    try:
        yield
    except EngineError:
        raise
    except (cuda.Error, RuntimeError, TypeError, ValueError, AttributeError, MemoryError) as error:
        raise EngineError(f'{what}: {first_line(error)}') from error


class PrimaryContext:
    """The device's primary CUDA context, the one the CUDA runtime (TensorRT, PyTorch) also uses.

    `with context:` makes it current on this thread for pycuda calls; `release` runs a clean-up
    inside it and then detaches, which pops it and drops the retained reference (pycuda skips the
    release for a context that is not current on another thread, so it is never popped first).
    """

    def __init__(self, device_index: int):
        with reported_as_engine_error(f'CUDA device {device_index}'):
            if device_index >= cuda.Device.count():
                raise EngineError(f'CUDA device {device_index} does not exist ({cuda.Device.count()} found)')
            self.device = cuda.Device(device_index)
            self._context = self.device.retain_primary_context()

    def __enter__(self) -> PrimaryContext:
        self._context.push()
        return self

    def __exit__(self, *exc_info) -> None:
        cuda.Context.pop()

    def release(self, clean_up: Callable[[], None]) -> None:
        """Run `clean_up` with the context current, then detach it."""
        self._context.push()
        try:
            clean_up()
        finally:
            self._context.detach()


def create_runtime() -> trt.Runtime:
    """A TensorRT runtime on the global logger (it must outlive the engines it deserialises)."""
    with reported_as_engine_error('TensorRT runtime'):
        return trt.Runtime(LOGGER)


def probe_environment(device: cuda.Device) -> BuildEnvironment:
    """TensorRT version and the GPU's name, compute capability, SM count and memory."""
    with reported_as_engine_error('CUDA device query'):
        major, minor = device.compute_capability()
        sm_count = int(device.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT))
        return BuildEnvironment(trt.__version__, device.name(), f'{major}.{minor}', sm_count,
                                int(device.total_memory()) >> 20)


def _parse(graph: Path, network: trt.INetworkDefinition) -> None:
    parser = trt.OnnxParser(network, LOGGER)
    check_onnx_for_tensorrt(graph, supports_operator=parser.supports_operator)
    if not parser.parse_from_file(str(graph)):
        errors = '; '.join(str(parser.get_error(i)).replace('\n', ' ') for i in range(parser.num_errors))
        raise UnsupportedOnnxError(f'{graph}: the TensorRT ONNX parser failed: {errors}')


def _use_timing_cache(config: trt.IBuilderConfig, timing_file: Path) -> None:
    """Start from the saved timing cache; one TensorRT rejects (another GPU) is replaced by a fresh one."""
    saved = timing_file.read_bytes() if timing_file.is_file() else b''
    if config.set_timing_cache(config.create_timing_cache(saved), ignore_mismatch=False):
        return
    LOG.warning('%s was made on another GPU or TensorRT; starting a new timing cache', timing_file)
    if not config.set_timing_cache(config.create_timing_cache(b''), ignore_mismatch=False):
        raise EngineError('TensorRT refused an empty timing cache')


def build_serialized_engine(onnx_path, options: BuildOptions, cache_dir, env: BuildEnvironment
                            ) -> tuple[bytes, list[TensorSpec], dict[str, str]]:
    """Build a strongly typed engine of the precision graph of `onnx_path`.

    Returns the plan bytes, the buffer plan and the model metadata (for the sidecar); reuses
    and updates the timing cache in `cache_dir`.
    """
    source = check_onnx_for_tensorrt(onnx_path)
    metadata = onnx_metadata(source)
    info = model_info_from_metadata(metadata, str(onnx_path))
    graph = precision_graph(onnx_path, options, cache_dir, info)
    specs = onnx_io_specs(source)
    with reported_as_engine_error(f'{onnx_path}: TensorRT build'):
        builder = trt.Builder(LOGGER)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        _parse(graph, network)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
        profile = builder.create_optimization_profile()
        for spec in specs:
            if spec.is_input:
                minimum, optimum, maximum = profile_shapes(spec, options.profile)
                profile.set_shape(spec.name, trt.Dims(list(minimum)), trt.Dims(list(optimum)),
                                  trt.Dims(list(maximum)))
        config.add_optimization_profile(profile)
        timing_file = timing_cache_path(cache_dir, env)
        _use_timing_cache(config, timing_file)
        started = time.perf_counter()
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EngineError(f'{onnx_path}: TensorRT failed to build the engine (run with --verbose for the log; '
                              'a larger --workspace-mib may help)')
        LOG.info('built %s engine in %.0f s', options.precision, time.perf_counter() - started)
        timing_cache = config.get_timing_cache()
        if timing_cache is not None:
            atomic_write_bytes(timing_file, bytes(timing_cache.serialize()))
    return bytes(serialized), plan_buffers(specs, options.profile.max), metadata


def _deserialize(runtime: trt.Runtime, path: Path) -> trt.ICudaEngine | None:
    try:
        return runtime.deserialize_cuda_engine(path.read_bytes())
    except (OSError, RuntimeError) as error:  # some releases raise instead of returning None
        LOG.warning('%s: %s', path, first_line(error))
        return None


def load_or_build_engine(runtime: trt.Runtime, onnx_path, engine_path, cache_dir, options: BuildOptions,
                         env: BuildEnvironment, force_rebuild: bool = False
                         ) -> tuple[trt.ICudaEngine, Path, dict]:
    """Return `(engine, engine_file, sidecar)`, building and caching the engine when needed.

    Every failure, TensorRT's and pycuda's included, is an EngineError with a one-line reason.
    """
    onnx_sha = file_sha256(onnx_path) if onnx_path is not None else None
    choice: EngineChoice = choose_engine(onnx_path, engine_path, cache_dir, env, options, force_rebuild, onnx_sha)
    LOG.info('TensorRT engine %s: %s (%s)', choice.path, choice.action, choice.reason)
    if choice.action == 'load':
        engine = _deserialize(runtime, choice.path)
        if engine is not None:
            return engine, choice.path, read_sidecar(choice.path)
        choice = after_failed_load(choice, onnx_path, force_rebuild,
                                   'built by another TensorRT version, or the file is corrupt')
        LOG.warning('%s; rebuilding', choice.reason)
    assert onnx_sha is not None  # after_failed_load/choose_engine only build from an ONNX file
    serialized, buffers, metadata = build_serialized_engine(onnx_path, options, cache_dir, env)
    write_engine(choice.path, serialized, engine_key(onnx_sha, env, options), metadata, buffers)
    with reported_as_engine_error(f'{choice.path}: TensorRT load'):
        built = runtime.deserialize_cuda_engine(serialized)
    if built is None:
        raise EngineError(f'{choice.path}: TensorRT could not load the engine it just built')
    return built, choice.path, read_sidecar(choice.path)
