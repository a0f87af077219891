"""Inference backends (ONNX Runtime, PyTorch, TensorRT) behind one interface.

`create_backend` imports a backend's runtime only when that backend is asked for, so a machine
without TensorRT or CUDA can still use the others.
"""
from __future__ import annotations

import importlib

from .base import BackendError, InferenceBackend, InferenceOutput, ModelInfo

BACKENDS = {
    'onnxruntime': ('starpose_ros.core.backends.onnxruntime_backend', 'OnnxRuntimeBackend'),
    'torch': ('starpose_ros.core.backends.torch_backend', 'TorchBackend'),
    'tensorrt': ('starpose_ros.core.backends.tensorrt_backend', 'TensorRTBackend'),
}

__all__ = ['BACKENDS', 'BackendError', 'InferenceBackend', 'InferenceOutput', 'ModelInfo', 'create_backend']


def create_backend(name: str, model_path, **options) -> InferenceBackend:
    """Load `model_path` with the backend called `name`; options go to its constructor.

    Raises BackendError for an unknown name, a runtime that is not installed, or a model that
    cannot be loaded.
    """
    if name not in BACKENDS:
        raise BackendError(f'unknown backend {name!r}; choose one of {sorted(BACKENDS)}')
    module_name, class_name = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BackendError(f'backend {name!r} is not available here: {error}') from error
    return getattr(module, class_name)(model_path, **options)
