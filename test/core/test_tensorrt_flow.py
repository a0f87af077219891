"""The GPU modules' own control flow, run here on a stand-in for tensorrt and pycuda.

No GPU is available, so `tensorrt` and `pycuda.driver` are replaced by small fakes (the names
the code uses, which mypy and test_tensorrt_api.py check against tensorrt-stubs); the "engine"
runs the precision graph with ONNX Runtime and the "device memory" is numpy. This checks what
neither the type checker nor a skipped GPU test can: a strongly typed network is asked for, a
rejected timing cache does not lose the build, output buffers come from the context's shapes,
data flows through host/device buffers, errors are one line, and close() frees inside the
context and then detaches. It does not check TensorRT itself (test_tensorrt.py -m gpu does).
"""
from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import onnxruntime as ort
import pytest

from starpose_ros.core.backends.base import BackendError

EVENTS: list[str] = []


class _Dims(tuple):
    def __new__(cls, shape=()):
        return super().__new__(cls, shape)


class _Context:
    def __init__(self, engine):
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name, shape):
        EVENTS.append(f'set_input_shape {tuple(shape)}')
        self.shapes[name] = tuple(shape)
        return shape[0] <= self.engine.max_batch

    def get_tensor_shape(self, name):
        batch = next(iter(self.shapes.values()))[0]
        return _Dims((batch, *self.engine.shapes[name][1:]))

    def set_tensor_address(self, name, address):
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream):
        (name, shape), = self.shapes.items()
        memory = _FakeCuda.memory
        feed = {name: memory[self.addresses[name]][:int(np.prod(shape))].view(np.uint8).reshape(shape)}
        outputs = self.engine.session.run(None, feed)
        for output, value in zip(self.engine.session.get_outputs(), outputs, strict=True):
            raw = np.ascontiguousarray(value).view(np.uint8).ravel()
            memory[self.addresses[output.name]][:raw.size] = raw
        return True


class _Engine:
    def __init__(self, graph: bytes):
        self.session = ort.InferenceSession(graph, providers=['CPUExecutionProvider'])
        self.max_batch = 4  # the fake engine's profile is batch 1..4
        self.io = [(i.name, np.uint8, True) for i in self.session.get_inputs()] + \
                  [(o.name, np.uint8 if o.type == 'tensor(uint8)' else np.float32, False)
                   for o in self.session.get_outputs()]
        self.shapes = {v.name: (-1, *v.shape[1:]) for v in [*self.session.get_inputs(), *self.session.get_outputs()]}
        self.num_io_tensors = len(self.io)

    def get_tensor_name(self, index):
        return self.io[index][0]

    def get_tensor_dtype(self, name):
        return next(dtype for n, dtype, _ in self.io if n == name)

    def get_tensor_shape(self, name):
        return _Dims(self.shapes[name])

    def get_tensor_mode(self, name):
        return 'INPUT' if next(inp for n, _, inp in self.io if n == name) else 'OUTPUT'

    def get_tensor_profile_shape(self, name, profile):
        return [_Dims((b, *self.shapes[name][1:])) for b in (1, 2, self.max_batch)]

    def create_execution_context(self):
        return _Context(self)


def _fake_tensorrt(reject_timing_cache: bool) -> types.ModuleType:
    trt = types.ModuleType('tensorrt')
    trt.__version__ = '10.3.0.30'
    trt.Dims = _Dims
    trt.nptype = lambda dtype: dtype
    trt.TensorIOMode = types.SimpleNamespace(INPUT='INPUT')
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE='WORKSPACE')
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    trt.Logger = type('Logger', (), {'WARNING': 2, 'VERBOSE': 4, '__init__': lambda self, s: None})
    trt.init_libnvinfer_plugins = lambda logger, namespace: EVENTS.append('plugins') or True

    class Config:
        def set_memory_pool_limit(self, pool, size):
            EVENTS.append(f'workspace {size >> 20}')

        def add_optimization_profile(self, profile):
            EVENTS.append(f'profile {profile.shapes}')

        def create_timing_cache(self, data):
            return types.SimpleNamespace(data=data, serialize=lambda: b'timing')

        def set_timing_cache(self, cache, ignore_mismatch):
            accepted = not (reject_timing_cache and cache.data)
            EVENTS.append(f'timing cache {"accepted" if accepted else "rejected"}')
            return accepted

        def get_timing_cache(self):
            return types.SimpleNamespace(serialize=lambda: b'timing')

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def supports_operator(self, op):
            return True

        def parse_from_file(self, path):
            self.network.graph = open(path, 'rb').read()
            return True

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            EVENTS.append(f'network flags {flags}')
            return types.SimpleNamespace(graph=None)

        create_builder_config = staticmethod(Config)

        def create_optimization_profile(self):
            profile = types.SimpleNamespace(shapes={})
            profile.set_shape = lambda name, *shapes: profile.shapes.update({name: [s[0] for s in shapes]})
            return profile

        def build_serialized_network(self, network, config):
            return network.graph

    trt.Builder, trt.OnnxParser = Builder, Parser
    trt.Runtime = type('Runtime', (), {'__init__': lambda self, logger: None,
                                       'deserialize_cuda_engine': lambda self, data: _Engine(bytes(data))})
    return trt


class _FakeCuda:
    memory: dict[int, np.ndarray] = {}

    class Error(Exception):
        pass

    device_attribute = types.SimpleNamespace(MULTIPROCESSOR_COUNT='SMS')

    class Context:
        @staticmethod
        def pop():
            EVENTS.append('pop')

    class Device:
        count = staticmethod(lambda: 1)

        def __init__(self, index):
            pass

        compute_capability = staticmethod(lambda: (8, 7))
        name = staticmethod(lambda: 'Orin')
        total_memory = staticmethod(lambda: 16 << 30)
        get_attribute = staticmethod(lambda attribute: 8)

        def retain_primary_context(self):
            return types.SimpleNamespace(push=lambda: EVENTS.append('push'), detach=lambda: EVENTS.append('detach'))


def _fake_pycuda() -> types.ModuleType:
    cuda = types.ModuleType('pycuda.driver')
    for name in ('Error', 'device_attribute', 'Context', 'Device'):
        setattr(cuda, name, getattr(_FakeCuda, name))
    cuda.init = lambda: None

    class Allocation(int):
        """A device address (an int, as pycuda's) whose memory is a numpy byte array."""

        def free(self):
            EVENTS.append('free')

    def mem_alloc(nbytes):
        address = Allocation(1000 + len(_FakeCuda.memory))
        _FakeCuda.memory[int(address)] = np.zeros(nbytes, np.uint8)
        return address

    cuda.mem_alloc = mem_alloc
    cuda.pagelocked_empty = lambda shape, dtype: np.zeros(shape, dtype)
    cuda.memcpy_htod_async = lambda address, host, stream: _FakeCuda.memory[int(address)].__setitem__(
        slice(0, host.nbytes), np.ascontiguousarray(host).view(np.uint8).ravel())
    cuda.memcpy_dtoh_async = lambda host, address, stream: host.reshape(-1).view(np.uint8).__setitem__(
        slice(None), _FakeCuda.memory[int(address)][:host.nbytes])
    cuda.Stream = lambda: types.SimpleNamespace(handle=0, synchronize=lambda: EVENTS.append('sync'))
    return cuda


@pytest.fixture
def fake_gpu(monkeypatch):
    """Import the GPU modules against the fakes; yields a function that re-imports them."""
    def install(reject_timing_cache=False):
        EVENTS.clear()
        _FakeCuda.memory.clear()
        pycuda = types.ModuleType('pycuda')
        pycuda.driver = _fake_pycuda()
        monkeypatch.setitem(sys.modules, 'tensorrt', _fake_tensorrt(reject_timing_cache))
        monkeypatch.setitem(sys.modules, 'pycuda', pycuda)
        monkeypatch.setitem(sys.modules, 'pycuda.driver', pycuda.driver)
        _forget_gpu_modules()
        return importlib.import_module('starpose_ros.core.backends.tensorrt_backend')
    yield install
    _forget_gpu_modules()


def _forget_gpu_modules():
    """Drop the GPU modules so the next import binds the current fakes (or the real packages)."""
    package = importlib.import_module('starpose_ros.core.backends')
    for name in ('tensorrt_runtime', 'tensorrt_build'):
        sys.modules.pop(f'starpose_ros.core.backends.{name}', None)
        if hasattr(package, name):
            delattr(package, name)


def test_backend_builds_strongly_typed_runs_and_closes_in_order(fake_gpu, tiny_model_files, tmp_path):
    backend_module = fake_gpu()
    (tmp_path / 'cache').mkdir()
    frames = np.random.default_rng(0).integers(0, 256, (3, 5, 64, 48, 3), dtype=np.uint8)
    onnx_path = tiny_model_files[0]
    backend = backend_module.TensorRTBackend(onnx_path, cache_dir=tmp_path / 'cache', precision='fp16', max_batch=4)
    assert 'network flags 2' in EVENTS and 'workspace 1024' in EVENTS  # 1 << STRONGLY_TYPED
    assert 'set_input_shape (4, 5, 64, 48, 3)' in EVENTS  # buffers sized from the context at max batch
    output = backend.infer(frames)
    (graph,) = (tmp_path / 'cache').glob('tiny.fp16.*.onnx')
    expected = ort.InferenceSession(str(graph), providers=['CPUExecutionProvider']).run(
        ['sr_image', 'keypoints'], {'lr_frames': frames})
    np.testing.assert_array_equal(output.sr_images, expected[0])
    np.testing.assert_array_equal(output.keypoints, expected[1])
    EVENTS.clear()
    backend.close()
    assert EVENTS[0] == 'push' and EVENTS[-1] == 'detach' and 'pop' not in EVENTS and 'free' in EVENTS


def test_rejected_timing_cache_does_not_lose_the_build(fake_gpu, tiny_model_files, tmp_path):
    backend_module = fake_gpu(reject_timing_cache=True)
    from starpose_ros.core.backends import tensorrt_engine
    env = importlib.import_module('starpose_ros.core.backends.tensorrt_build').probe_environment(
        sys.modules['pycuda.driver'].Device(0))
    tensorrt_engine.timing_cache_path(tmp_path, env).write_bytes(b'from another GPU')
    with backend_module.TensorRTBackend(tiny_model_files[0], cache_dir=tmp_path, precision='fp32', max_batch=4):
        pass
    assert EVENTS.count('timing cache rejected') == 1 and 'timing cache accepted' in EVENTS
    assert tensorrt_engine.timing_cache_path(tmp_path, env).read_bytes() == b'timing'


def test_gpu_errors_become_one_line_backend_errors(fake_gpu, tiny_model_files, tmp_path, monkeypatch):
    backend_module = fake_gpu()
    trt = sys.modules['tensorrt']

    def broken_build(self, network, config):
        raise RuntimeError('CUDA error 2: out of memory\n  at builder.cpp:123')
    monkeypatch.setattr(trt.Builder, 'build_serialized_network', broken_build)
    with pytest.raises(BackendError) as error:
        backend_module.TensorRTBackend(tiny_model_files[0], cache_dir=tmp_path, precision='fp32')
    assert str(error.value).endswith('TensorRT build: RuntimeError: CUDA error 2: out of memory')
    assert '\n' not in str(error.value) and EVENTS[-1] == 'detach'


def test_unsupported_tensorrt_is_refused_in_one_line(fake_gpu, tiny_model_files, monkeypatch):
    backend_module = fake_gpu()
    sys.modules['tensorrt'].__version__ = '8.6.2'
    with pytest.raises(BackendError, match=r'^TensorRT 8\.6\.2 is not supported: StarPose needs tensorrt>=10\.3,<12'):
        backend_module.TensorRTBackend(tiny_model_files[0])
