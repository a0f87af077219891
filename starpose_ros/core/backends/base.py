"""The interface every inference backend implements (see docs/architecture.md, "Backends").

A backend runs the whole exported inference graph: uint8 LR windows in, uint8 SR crops and
HR-crop keypoints out. Everything per-pixel happens inside it, so the core never touches a
tensor framework.
"""
from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from starpose_model.contract import HR_SIZE, KEYPOINT_LAYOUTS, TARGET_FRAMES, model_facts, target_index
from starpose_model.keypoints import NUM_KEYPOINTS

SR_HEIGHT, SR_WIDTH = HR_SIZE


class BackendError(RuntimeError):
    """A model could not be loaded or run; the message names the file or tensor at fault."""


@dataclass(frozen=True)
class ModelInfo:
    """What the core must know about a model to feed it: window, LR size, layout, target frame."""

    window: int
    lr_height: int
    lr_width: int
    keypoint_layout: str = 'coco'
    target_frame: str = 'last'

    def __post_init__(self):
        """Reject metadata the core cannot honour, naming the field."""
        if self.window < 1:
            raise BackendError(f'model window must be >= 1, got {self.window}')
        if self.lr_height < 1 or self.lr_width < 1:
            raise BackendError(f'model LR size must be positive, got {self.lr_height}x{self.lr_width}')
        if self.lr_height * SR_WIDTH != self.lr_width * SR_HEIGHT:
            raise BackendError(f'model LR size {self.lr_height}x{self.lr_width} does not have the HR crop\'s '
                               f'{SR_HEIGHT}x{SR_WIDTH} aspect (LR and HR crops must cover the same region)')
        if self.keypoint_layout not in KEYPOINT_LAYOUTS:
            raise BackendError(f'unknown keypoint_layout {self.keypoint_layout!r}; expected one of {KEYPOINT_LAYOUTS}')
        if self.target_frame not in TARGET_FRAMES:
            raise BackendError(f'unknown target_frame {self.target_frame!r}; expected one of {TARGET_FRAMES}')

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str, input_shape: Sequence[object] = ()) -> ModelInfo:
        """The facts in a file's `starpose.*` metadata (static `input_shape` dims fill in sizes), naming `source`."""
        try:
            return cls(**model_facts(metadata, input_shape))  # type: ignore[arg-type]
        except KeyError as missing:
            raise BackendError(f'{source}: model metadata lacks {missing.args[0]!r}') from None
        except ValueError as error:
            raise BackendError(f'{source}: bad model metadata ({error})') from None

    @property
    def target_index(self) -> int:
        """Index of the target frame inside a window (oldest first)."""
        return target_index(self.window, self.target_frame)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Shape of one sample of `lr_frames` without the batch axis: (T, h, w, 3)."""
        return (self.window, self.lr_height, self.lr_width, 3)


@dataclass
class InferenceOutput:
    """Backend results for a batch of B windows."""

    sr_images: np.ndarray  # (B, 256, 192, 3) uint8 RGB
    keypoints: np.ndarray  # (B, 17, 3) float32: x, y in HR-crop pixels, score


class InferenceBackend(abc.ABC):
    """One loaded model; `infer` may be called from a worker thread (one call at a time)."""

    name: str = 'base'

    @property
    @abc.abstractmethod
    def model_info(self) -> ModelInfo:
        """Window length, LR size, keypoint layout and target frame of the loaded model."""

    @abc.abstractmethod
    def _run(self, lr_frames: np.ndarray) -> InferenceOutput:
        """Run the model on a validated uint8 batch (B, T, h, w, 3) with B >= 1."""

    def infer(self, lr_frames: np.ndarray) -> InferenceOutput:
        """Validate the batch against `model_info`, run it and check the outputs' shapes."""
        self.check_input(lr_frames)
        output = self._run(np.ascontiguousarray(lr_frames))
        batch = lr_frames.shape[0]
        if output.sr_images.shape != (batch, SR_HEIGHT, SR_WIDTH, 3):
            raise BackendError(f'{self.name}: sr_image has shape {output.sr_images.shape}, '
                               f'expected {(batch, SR_HEIGHT, SR_WIDTH, 3)}')
        if output.keypoints.shape != (batch, NUM_KEYPOINTS, 3):
            raise BackendError(f'{self.name}: keypoints has shape {output.keypoints.shape}, '
                               f'expected {(batch, NUM_KEYPOINTS, 3)}')
        return output

    def check_input(self, lr_frames: np.ndarray) -> None:
        """Raise BackendError naming the mismatch if `lr_frames` is not uint8 (B, T, h, w, 3)."""
        expected = self.model_info.input_shape
        if not isinstance(lr_frames, np.ndarray) or lr_frames.dtype != np.uint8:
            raise BackendError(f'{self.name}: lr_frames must be a uint8 numpy array, got '
                               f'{getattr(lr_frames, "dtype", type(lr_frames).__name__)}')
        if lr_frames.ndim != 5 or lr_frames.shape[1:] != expected or lr_frames.shape[0] < 1:
            raise BackendError(f'{self.name}: lr_frames has shape {lr_frames.shape}, expected (B>=1, *{expected})')

    @abc.abstractmethod
    def close(self) -> None:
        """Release the model and any device memory; the backend is unusable afterwards."""

    def __enter__(self):
        """Use as a context manager that closes the backend on exit."""
        return self

    def __exit__(self, *exc_info):
        """Close on leaving the `with` block."""
        self.close()
