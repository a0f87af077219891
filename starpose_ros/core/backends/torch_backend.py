"""PyTorch backend: runs a StarPose inference checkpoint (`.pt`) directly, on CPU or CUDA."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import BackendError, InferenceBackend, InferenceOutput, ModelInfo

_DEVICES = ('cpu', 'cuda', 'auto')


class TorchBackend(InferenceBackend):
    """`starpose_model.checkpoint.load_inference_model` in eval mode under `torch.inference_mode`.

    `device`: 'cpu', 'cuda' or 'auto' (CUDA when available). `fp16` runs the network under CUDA
    autocast (the model keeps its numerically sensitive sums in float32); it is ignored on CPU.
    `method` (`starpose_model.inference.METHODS`) swaps the SR network for bicubic or bilinear
    upsampling in front of the same pose net, to compare against STAR-Pose on the same input.
    """

    name = 'torch'

    def __init__(self, model_path, device: str = 'cpu', fp16: bool = False, num_threads: int = 0,
                 method: str = 'star_pose'):
        import torch

        from starpose_model.checkpoint import load_inference_model
        from starpose_model.inference import METHODS, with_method

        if device not in _DEVICES:
            raise BackendError(f'torch: device must be one of {_DEVICES}, got {device!r}')
        if method not in METHODS:
            raise BackendError(f'torch: method must be one of {METHODS}, got {method!r}')
        if device == 'cuda' and not torch.cuda.is_available():
            raise BackendError('torch: device cuda requested but CUDA is not available to this PyTorch')
        self.device = torch.device('cuda' if device != 'cpu' and torch.cuda.is_available() else 'cpu')
        path = Path(model_path)
        if not path.is_file():
            raise BackendError(f'torch: model file not found: {path}')
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        try:
            self._model = load_inference_model(path, self.device)
        except Exception as error:  # corrupt zip/pickle, wrong format, state-dict mismatch: all named by the loader
            raise BackendError(f'torch: cannot load model {path}: {error}') from error
        try:
            self._model = with_method(self._model, method)
        except ValueError as error:
            raise BackendError(f'torch: {path}: {error}') from None
        self.method = method
        self._torch = torch
        self.fp16 = bool(fp16) and self.device.type == 'cuda'
        self.path = path
        self._info = ModelInfo(window=int(self._model.window), lr_height=int(self._model.lr_size[0]),
                               lr_width=int(self._model.lr_size[1]), keypoint_layout=self._model.keypoint_layout,
                               target_frame=self._model.config.target_frame)

    @property
    def model_info(self) -> ModelInfo:
        """Metadata from the checkpoint's config."""
        return self._info

    def _run(self, lr_frames: np.ndarray) -> InferenceOutput:
        torch = self._torch
        if self._model is None:
            raise BackendError(f'torch: backend for {self.path} is closed')
        inputs = torch.from_numpy(lr_frames).to(self.device, non_blocking=True)
        with torch.inference_mode(), torch.autocast('cuda', dtype=torch.float16, enabled=self.fp16):
            sr_image, keypoints, _ = self._model(inputs)
        return InferenceOutput(sr_images=sr_image.cpu().numpy(), keypoints=keypoints.float().cpu().numpy())

    def close(self) -> None:
        """Drop the model and return cached CUDA memory to the driver."""
        self._model = None
        if self.device.type == 'cuda':
            self._torch.cuda.empty_cache()
