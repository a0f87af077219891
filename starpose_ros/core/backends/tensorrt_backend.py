"""TensorRT 10 backend: runs a cached (or freshly built) engine with pycuda buffers and a stream.

Set-up happens once: the engine is loaded or built (tensorrt_engine.load_or_build_engine),
page-locked host buffers and device buffers are sized for the profile's largest batch, and every
tensor address is bound. A call then copies the batch in, sets the input shape, enqueues with
`execute_async_v3` and copies the used rows of the SR crops and keypoints back asynchronously
(the heatmaps output stays on the device) before one stream synchronisation. The CUDA context
is the device's primary context, pushed around every call, so the node may call `infer` from
its worker thread.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from starpose_ros.core.backends.base import BackendError, InferenceBackend, InferenceOutput, ModelInfo
from starpose_ros.core.backends.tensorrt_engine import (
    DEFAULT_CACHE_DIR,
    BatchProfile,
    BufferSpec,
    BuildOptions,
    EngineError,
    TensorSpec,
    import_pycuda,
    import_tensorrt,
    load_or_build_engine,
    model_info_from_metadata,
    plan_buffers,
    probe_environment,
)

LOG = logging.getLogger(__name__)
SR_OUTPUT, KEYPOINT_OUTPUT = 'sr_image', 'keypoints'
ENGINE_SUFFIXES = ('.engine', '.plan', '.trt')


def engine_io_specs(trt, engine) -> list[TensorSpec]:
    """The engine's I/O tensors via the TensorRT 10 named-tensor API (-1 marks the batch axis)."""
    specs = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        specs.append(TensorSpec(name, np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
                                tuple(engine.get_tensor_shape(name)),
                                engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT))
    return specs


def engine_max_batch(engine, input_name: str) -> int:
    """Largest batch of optimisation profile 0 (what the buffers must hold)."""
    _minimum, _optimum, maximum = engine.get_tensor_profile_shape(input_name, 0)
    return int(maximum[0])


class TensorRTBackend(InferenceBackend):
    """Runs the StarPose graph with TensorRT; same interface as the ONNX Runtime/PyTorch backends."""

    name = 'tensorrt'

    def __init__(self, model_path, engine_path=None, cache_dir=DEFAULT_CACHE_DIR, precision: str = 'fp16',
                 max_batch: int = 16, opt_batch: int | None = None, workspace_mib: int = 1024,
                 force_engine_rebuild: bool = False, calibration_data=None, device_index: int = 0,
                 verbose: bool = False):
        """Load or build the engine and allocate buffers; raise BackendError (never crash) on failure.

        `model_path` is the exported `.onnx` (the engine is cached in `cache_dir`, or written to
        `engine_path` when given) or a prebuilt `.engine`/`.plan` file with its JSON sidecar.
        """
        if Path(model_path).suffix in ENGINE_SUFFIXES:
            onnx_path, engine_path = None, model_path
        else:
            onnx_path = model_path
        self._trt = import_tensorrt()
        self._cuda = import_pycuda()
        options = BuildOptions(precision, BatchProfile(1, opt_batch or min(4, max_batch), max_batch), workspace_mib,
                               calibration_data=calibration_data)
        env = probe_environment(device_index)
        self._device, self._host = {}, {}
        self._context = self._engine = self._runtime = self._stream = None
        self._context_stack = self._cuda.Device(device_index).retain_primary_context()
        self._context_stack.push()
        try:
            self._set_up(onnx_path, engine_path, cache_dir, options, force_engine_rebuild, env, verbose)
        except Exception as error:  # a CUDA/TensorRT failure must become a failed configure, not a crash
            self._cuda.Context.pop()
            self.close()
            if isinstance(error, BackendError):
                raise
            raise EngineError(f'TensorRT backend set-up failed: {error}') from error
        self._cuda.Context.pop()
        LOG.info('TensorRT engine %s ready: batch <= %d, %s', self.engine_path, self.max_batch, self._model_info)

    def _set_up(self, onnx_path, engine_path, cache_dir, options, force_engine_rebuild, env, verbose) -> None:
        trt, cuda = self._trt, self._cuda
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING))
        self._engine, self.engine_path, sidecar = load_or_build_engine(
            self._runtime, onnx_path, engine_path, cache_dir, options, force_engine_rebuild, env, verbose)
        self._model_info = model_info_from_metadata(sidecar.get('model_metadata', {}), str(self.engine_path))
        specs = engine_io_specs(trt, self._engine)
        inputs = [s for s in specs if s.is_input]
        if len(inputs) != 1 or not {SR_OUTPUT, KEYPOINT_OUTPUT} <= {s.name for s in specs if not s.is_input}:
            raise EngineError(f'{self.engine_path}: expected one input and outputs {SR_OUTPUT!r}, '
                              f'{KEYPOINT_OUTPUT!r}; engine has {[s.name for s in specs]}')
        self._input = inputs[0].name
        self.max_batch = engine_max_batch(self._engine, self._input)
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f'{self.engine_path}: could not create an execution context (GPU memory?)')
        self._stream = cuda.Stream()
        self._buffers: list[BufferSpec] = plan_buffers(specs, self.max_batch)
        self._host = {b.name: cuda.pagelocked_empty(b.max_shape, b.dtype) for b in self._buffers}
        self._device = {b.name: cuda.mem_alloc(b.nbytes) for b in self._buffers}
        for buffer in self._buffers:
            if not self._context.set_tensor_address(buffer.name, int(self._device[buffer.name])):
                raise EngineError(f'{self.engine_path}: could not bind tensor {buffer.name!r}')

    @property
    def model_info(self) -> ModelInfo:
        """Window, LR size, keypoint layout and target frame recorded when the engine was built."""
        return self._model_info

    def _run(self, lr_frames: np.ndarray) -> InferenceOutput:
        batch = lr_frames.shape[0]
        if batch > self.max_batch:
            raise BackendError(f'tensorrt: batch {batch} exceeds the engine profile maximum {self.max_batch} '
                               f'({self.engine_path}); rebuild with a larger max batch or lower max_tracks')
        cuda = self._cuda
        self._context_stack.push()
        try:
            host_input = self._host[self._input][:batch]
            host_input[...] = lr_frames
            cuda.memcpy_htod_async(self._device[self._input], host_input, self._stream)
            if not self._context.set_input_shape(self._input, lr_frames.shape):
                raise BackendError(f'tensorrt: input shape {lr_frames.shape} rejected by {self.engine_path}')
            if not self._context.execute_async_v3(self._stream.handle):
                raise BackendError(f'tensorrt: execute_async_v3 failed on {self.engine_path}')
            for name in (SR_OUTPUT, KEYPOINT_OUTPUT):  # heatmaps stay on the device (bound, never read)
                cuda.memcpy_dtoh_async(self._host[name][:batch], self._device[name], self._stream)
            self._stream.synchronize()
        finally:
            cuda.Context.pop()
        return InferenceOutput(sr_images=self._host[SR_OUTPUT][:batch].copy(),
                               keypoints=self._host[KEYPOINT_OUTPUT][:batch].copy())

    def _release(self) -> None:
        """Free device memory and TensorRT objects (the primary context must be current)."""
        for allocation in self._device.values():
            allocation.free()
        self._device, self._host = {}, {}
        self._context = self._engine = self._runtime = self._stream = None

    def close(self) -> None:
        """Release the GPU: buffers, execution context, engine, then the primary-context reference."""
        stack = getattr(self, '_context_stack', None)
        if stack is None:
            return
        stack.push()
        try:
            self._release()
        finally:
            self._cuda.Context.pop()
            stack.detach()
            self._context_stack = None

