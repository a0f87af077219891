"""Reading PyTorch files safely: no code runs on load, and every failure is one CheckpointError.

The lowest layer of model loading, shared by the pose nets (official HRNet checkpoints) and the
inference checkpoints (`checkpoint.py`).
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch


class CheckpointError(RuntimeError):
    """A model file is missing, unreadable, of the wrong kind, or does not fit the model."""


def read_torch_file(path, trusted: bool = False) -> object:
    """`torch.load` on CPU with `weights_only=True` unless `trusted`, turning every failure into CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: no such checkpoint file')
    try:
        return torch.load(path, map_location='cpu', weights_only=not trusted)
    except pickle.UnpicklingError as error:  # an ONNX file, another program's pickle, a PyTorch file with code
        raise CheckpointError(f'{path}: cannot be read without running code from it '
                              f'({str(error).splitlines()[0][:80]}): not a file StarPose wrote (its .pt files load '
                              'safely); from Python, trusted=True reads a file you trust') from error
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise CheckpointError(f'{path}: not a readable PyTorch checkpoint ({error})') from error


def load_state_dict_strict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load with strict=True semantics, raising one error that names every missing/unexpected/misshapen key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshapen = sorted(f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}'
                       for k in set(expected) & set(state_dict) if state_dict[k].shape != expected[k].shape)
    if missing or unexpected or misshapen:
        def listing(title: str, items: list[str]) -> str:
            shown = ', '.join(items[:20]) + (f', ... ({len(items) - 20} more)' if len(items) > 20 else '')
            return f'\n  {title} ({len(items)}): {shown}' if items else ''
        raise CheckpointError(f'{source} does not match {type(model).__name__}:'
                              + listing('missing keys', missing) + listing('unexpected keys', unexpected)
                              + listing('shape mismatches', misshapen))
    model.load_state_dict(state_dict, strict=True)
