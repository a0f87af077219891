"""ONNX Runtime backend: runs the exported StarPose graph on the CPU or, when present, CUDA."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import BackendError, InferenceBackend, InferenceOutput, ModelInfo

_DEVICES = ('cpu', 'cuda', 'auto')
SPINNING_ENV = 'STARPOSE_ORT_SPINNING'  # '1': let idle ONNX Runtime threads spin (node and replay)


def spinning_default() -> bool:
    """Off unless `STARPOSE_ORT_SPINNING=1`: spinning threads burn a core between frames (docs/benchmarks.md)."""
    return os.environ.get(SPINNING_ENV, '0') == '1'


def _model_info_from(session, path: Path) -> ModelInfo:
    """Read window / LR size / layout / target frame from metadata_props (input shape as fallback)."""
    inputs = {i.name: i for i in session.get_inputs()}
    if 'lr_frames' not in inputs:
        raise BackendError(f'{path}: the model has no input named lr_frames (inputs: {sorted(inputs)})')
    if inputs['lr_frames'].type != 'tensor(uint8)':
        raise BackendError(f'{path}: input lr_frames is {inputs["lr_frames"].type}, expected tensor(uint8)')
    outputs = {o.name for o in session.get_outputs()}
    missing = {'sr_image', 'keypoints'} - outputs
    if missing:
        raise BackendError(f'{path}: the model lacks outputs {sorted(missing)} (outputs: {sorted(outputs)})')
    shape = inputs['lr_frames'].shape  # ['batch', T, h, w, 3]; dims may be names when dynamic
    info = ModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map, str(path), shape)
    static = [(name, int(dim), expected) for name, dim, expected in
              zip(('window', 'lr_height', 'lr_width'), shape[1:4], info.input_shape[:3], strict=True)
              if isinstance(dim, int)]
    for name, dim, expected in static:
        if dim != expected:
            raise BackendError(f'{path}: metadata says {name}={expected} but input lr_frames has {dim}')
    return info


class OnnxRuntimeBackend(InferenceBackend):
    """An `onnxruntime.InferenceSession` on the exported model.

    `device`: 'cpu', 'cuda' (fails when the CUDA provider is missing) or 'auto' (CUDA if the
    installed onnxruntime has it, else CPU). `intra_op_threads` 0 lets ONNX Runtime choose.
    `allow_spinning` (default: `spinning_default()`) lets the thread pools busy-wait for work
    instead of sleeping; off, a camera-rate node leaves the CPU to the driver and the detector.
    """

    name = 'onnxruntime'

    def __init__(self, model_path, device: str = 'cpu', intra_op_threads: int = 0, allow_spinning: bool | None = None):
        import onnxruntime as ort

        if device not in _DEVICES:
            raise BackendError(f'onnxruntime: device must be one of {_DEVICES}, got {device!r}')
        path = Path(model_path)
        if not path.is_file():
            raise BackendError(f'onnxruntime: model file not found: {path}')
        available = ort.get_available_providers()
        has_cuda = 'CUDAExecutionProvider' in available
        if device == 'cuda' and not has_cuda:
            raise BackendError(f'onnxruntime: device cuda requested but this onnxruntime has only {available}')
        providers = (['CUDAExecutionProvider'] if device != 'cpu' and has_cuda else []) + ['CPUExecutionProvider']
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(intra_op_threads)
        spinning = '1' if (spinning_default() if allow_spinning is None else allow_spinning) else '0'
        options.add_session_config_entry('session.intra_op.allow_spinning', spinning)
        options.add_session_config_entry('session.inter_op.allow_spinning', spinning)
        self.allow_spinning = spinning == '1'
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types for every parse/load failure
            raise BackendError(f'onnxruntime: cannot load model {path}: {error}') from error
        self._info = _model_info_from(self._session, path)
        self.providers = self._session.get_providers()
        self.path = path

    @property
    def model_info(self) -> ModelInfo:
        """Metadata read from the ONNX file."""
        return self._info

    def _run(self, lr_frames: np.ndarray) -> InferenceOutput:
        if self._session is None:
            raise BackendError(f'onnxruntime: backend for {self.path} is closed')
        sr_images, keypoints = self._session.run(['sr_image', 'keypoints'], {'lr_frames': lr_frames})
        return InferenceOutput(sr_images=sr_images, keypoints=keypoints.astype(np.float32, copy=False))

    def close(self) -> None:
        """Drop the session (frees its memory, including GPU memory with CUDA)."""
        self._session = None
