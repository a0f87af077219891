"""Run a TensorRT engine with pycuda buffers and one stream (needs tensorrt and pycuda).

Buffers are sized once: the input shape is set to the profile's largest batch and every output
is sized from the shape the execution context then reports (the engine's own shapes keep -1
for the batch axis). A call copies the batch in, sets its shape, enqueues `execute_async_v3`,
copies the used rows of the named outputs back and synchronises the stream once.
"""
from __future__ import annotations

import numpy as np
import pycuda.driver as cuda
import tensorrt as trt

from starpose_ros.core.backends.tensorrt_build import reported_as_engine_error
from starpose_ros.core.backends.tensorrt_onnx import EngineError, TensorSpec


def shape_of(dims: trt.Dims) -> tuple[int, ...]:
    """A TensorRT Dims as a tuple of ints (-1 for a dynamic axis)."""
    return tuple(dims[axis] for axis in range(len(dims)))


def engine_io_specs(engine: trt.ICudaEngine) -> list[TensorSpec]:
    """The engine's I/O tensors through the named-tensor API (-1 marks the batch axis)."""
    specs = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        specs.append(TensorSpec(name, np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
                                shape_of(engine.get_tensor_shape(name)),
                                engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT))
    return specs


def engine_max_batch(engine: trt.ICudaEngine, input_name: str) -> int:
    """Largest batch of optimisation profile 0 (what the buffers must hold)."""
    _minimum, _optimum, maximum = engine.get_tensor_profile_shape(input_name, 0)
    return int(maximum[0])


def context_buffers(context: trt.IExecutionContext, specs: list[TensorSpec], input_name: str,
                    max_batch: int) -> list[TensorSpec]:
    """Buffer sizes at `max_batch`, outputs from the context's shapes after `set_input_shape`."""
    shape = (max_batch, *next(s for s in specs if s.name == input_name).shape[1:])
    if not context.set_input_shape(input_name, shape):
        raise EngineError(f'input shape {shape} is outside the engine profile')
    buffers = []
    for spec in specs:
        resolved = shape if spec.is_input else shape_of(context.get_tensor_shape(spec.name))
        if any(size < 0 for size in resolved):
            raise EngineError(f'output {spec.name!r} has no fixed shape at batch {max_batch}: {resolved}')
        buffers.append(TensorSpec(spec.name, spec.dtype, resolved, spec.is_input))
    return buffers


class EngineRunner:
    """An execution context with its page-locked host and device buffers and a stream.

    The caller makes the CUDA context current around construction, `run` and `free`.
    """

    def __init__(self, engine: trt.ICudaEngine, input_name: str, max_batch: int):
        self.engine, self.input_name = engine, input_name
        self.specs = engine_io_specs(engine)
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, cuda.DeviceAllocation] = {}
        with reported_as_engine_error('TensorRT execution context'):
            context = engine.create_execution_context()
            if context is None:
                raise EngineError('TensorRT could not create an execution context (GPU memory?)')
            self.context = context
            self.buffers = context_buffers(context, self.specs, input_name, max_batch)
            self.stream = cuda.Stream()
            for buffer in self.buffers:
                self.host[buffer.name] = cuda.pagelocked_empty(buffer.shape, buffer.dtype)
                self.device[buffer.name] = cuda.mem_alloc(buffer.nbytes)
                if not context.set_tensor_address(buffer.name, int(self.device[buffer.name])):
                    raise EngineError(f'TensorRT refused the address of tensor {buffer.name!r}')

    def run(self, lr_frames: np.ndarray, read: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Run one batch; copies of the first B rows of the `read` outputs (others stay on the GPU)."""
        batch = lr_frames.shape[0]
        host_input = self.host[self.input_name][:batch]
        host_input[...] = lr_frames
        cuda.memcpy_htod_async(self.device[self.input_name], host_input, self.stream)
        if not self.context.set_input_shape(self.input_name, lr_frames.shape):
            raise EngineError(f'input shape {lr_frames.shape} rejected by the engine')
        if not self.context.execute_async_v3(self.stream.handle):
            raise EngineError('execute_async_v3 failed')
        for name in read:
            cuda.memcpy_dtoh_async(self.host[name][:batch], self.device[name], self.stream)
        self.stream.synchronize()
        return {name: self.host[name][:batch].copy() for name in read}

    def free(self) -> None:
        """Free device memory, then drop the context (the engine and runtime belong to the caller)."""
        for allocation in self.device.values():
            allocation.free()
        self.device, self.host = {}, {}
        del self.context
