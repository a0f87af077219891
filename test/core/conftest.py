"""The core's tests: an ONNX Runtime backend on the tiny model (the model files: test/conftest.py)."""
import pytest


@pytest.fixture(scope='session')
def ort_backend(tiny_model_files):
    """An ONNX Runtime backend on the exported tiny model (CPU, 2 threads)."""
    from starpose_ros.core.backends import create_backend

    backend = create_backend('onnxruntime', tiny_model_files[0], intra_op_threads=2)
    yield backend
    backend.close()
