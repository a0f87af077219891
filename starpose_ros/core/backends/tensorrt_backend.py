"""TensorRT backend: runs a cached (or freshly built) strongly typed engine through pycuda.

Set-up happens once: the engine is loaded or built (`tensorrt_build.load_or_build_engine`) and
the buffers are sized for the profile's largest batch (`tensorrt_runtime.EngineRunner`). The
CUDA context is the device's primary context, pushed around every call, so the node may call
`infer` from its worker thread. TensorRT and pycuda are imported only when a backend is made,
so this module imports on any machine; every failure is a BackendError with a one-line reason.
"""
from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

import numpy as np

from starpose_ros.core.backends.base import BackendError, InferenceBackend, InferenceOutput, ModelInfo
from starpose_ros.core.backends.tensorrt_engine import DEFAULT_CACHE_DIR, BuildOptions
from starpose_ros.core.backends.tensorrt_onnx import BatchProfile, EngineError, model_info_from_metadata

LOG = logging.getLogger(__name__)
SR_OUTPUT, KEYPOINT_OUTPUT = 'sr_image', 'keypoints'
ENGINE_SUFFIXES = ('.engine', '.plan', '.trt')


def import_gpu_stack() -> tuple[ModuleType, ModuleType]:
    """`(tensorrt_build, tensorrt_runtime)`, or EngineError saying what is missing or unsupported."""
    try:
        from starpose_ros.core.backends import tensorrt_build, tensorrt_runtime
    except EngineError:
        raise
    except ImportError as error:
        raise EngineError(f'the TensorRT backend needs the tensorrt and pycuda Python packages ({error}); '
                          'see docs/tensorrt.md') from error
    except Exception as error:  # pycuda's driver init fails without a usable GPU or driver
        raise EngineError(f'TensorRT/CUDA start-up failed: {type(error).__name__}: {error}') from error
    return tensorrt_build, tensorrt_runtime


class TensorRTBackend(InferenceBackend):
    """Runs the StarPose graph with TensorRT; same interface as the ONNX Runtime/PyTorch backends."""

    name = 'tensorrt'

    def __init__(self, model_path, engine_path=None, cache_dir=DEFAULT_CACHE_DIR, precision: str = 'fp16',
                 max_batch: int = 16, opt_batch: int | None = None, workspace_mib: int = 1024,
                 force_engine_rebuild: bool = False, calibration_data=None, device_index: int = 0,
                 verbose: bool = False):
        """Load or build the engine and allocate buffers; raise BackendError (never crash) on failure.

        `model_path` is an exported `.onnx` (FP32, from which the FP16/INT8 graph is derived, or
        an FP16/INT8 graph from `starpose-export --precision`) cached in `cache_dir` or written to
        `engine_path`, or a prebuilt `.engine`/`.plan` file with its JSON sidecar.
        """
        onnx_path = None if Path(model_path).suffix in ENGINE_SUFFIXES else model_path
        engine_path = model_path if onnx_path is None else engine_path
        options = BuildOptions(precision, BatchProfile(1, opt_batch or min(4, max_batch), max_batch), workspace_mib,
                               calibration_data=calibration_data)
        build, runtime_module = import_gpu_stack()
        build.set_verbose(verbose)
        self._first_line = build.first_line
        self._runner = self._engine = self._runtime = None
        self._primary = build.PrimaryContext(device_index)
        try:
            with self._primary:
                env = build.probe_environment(self._primary.device)
                self._runtime = build.create_runtime()
                self._engine, self.engine_path, sidecar = build.load_or_build_engine(
                    self._runtime, onnx_path, engine_path, cache_dir, options, env, force_engine_rebuild)
                self._model_info = model_info_from_metadata(sidecar.get('model_metadata', {}), str(self.engine_path))
                self._runner = self._make_runner(runtime_module)
        except Exception as error:  # a CUDA/TensorRT failure must fail the node's configure, not crash it
            self.close()
            if isinstance(error, BackendError):
                raise
            raise EngineError(f'TensorRT backend set-up failed: {self._first_line(error)}') from error
        LOG.info('TensorRT engine %s ready: batch <= %d, %s', self.engine_path, self.max_batch, self._model_info)

    def _make_runner(self, runtime_module: ModuleType):
        specs = runtime_module.engine_io_specs(self._engine)
        inputs = [s for s in specs if s.is_input]
        if len(inputs) != 1 or not {SR_OUTPUT, KEYPOINT_OUTPUT} <= {s.name for s in specs if not s.is_input}:
            raise EngineError(f'{self.engine_path}: expected one input and outputs {SR_OUTPUT!r}, '
                              f'{KEYPOINT_OUTPUT!r}; engine has {[s.name for s in specs]}')
        self.max_batch = runtime_module.engine_max_batch(self._engine, inputs[0].name)
        return runtime_module.EngineRunner(self._engine, inputs[0].name, self.max_batch)

    @property
    def model_info(self) -> ModelInfo:
        """Window, LR size, keypoint layout and target frame recorded when the engine was built."""
        return self._model_info

    def _run(self, lr_frames: np.ndarray) -> InferenceOutput:
        batch = lr_frames.shape[0]
        if batch > self.max_batch:
            raise BackendError(f'tensorrt: batch {batch} exceeds the engine profile maximum {self.max_batch} '
                               f'({self.engine_path}); rebuild with a larger max batch or lower max_tracks')
        try:
            with self._primary:
                outputs = self._runner.run(lr_frames, (SR_OUTPUT, KEYPOINT_OUTPUT))
        except EngineError as error:
            raise BackendError(f'tensorrt: {error} ({self.engine_path})') from error
        except Exception as error:  # pycuda/TensorRT errors of a call become one line, never a crash
            reason = self._first_line(error)
            raise BackendError(f'tensorrt: inference failed on {self.engine_path}: {reason}') from error
        return InferenceOutput(sr_images=outputs[SR_OUTPUT], keypoints=outputs[KEYPOINT_OUTPUT])

    def _release(self) -> None:
        """Free the buffers and context, then the engine, then the runtime (the reverse of creation)."""
        if self._runner is not None:
            self._runner.free()
        self._runner = self._engine = self._runtime = None

    def close(self) -> None:
        """Release the GPU inside the primary context, then detach that context."""
        primary = getattr(self, '_primary', None)
        if primary is None:
            return
        self._primary = None
        primary.release(self._release)
