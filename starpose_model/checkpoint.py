"""One-file inference checkpoints: configuration, SR and pose-net weights, keypoint layout.

`save_checkpoint` writes a plain dict of tensors and built-in types so that
`load_inference_model` can read it with `torch.load(weights_only=True)` (no code runs on load).
The format is versioned; an unknown version or a file that is not such a checkpoint is
rejected with an error naming the file and what is wrong.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

CHECKPOINT_FORMAT = 'starpose-inference'
CHECKPOINT_VERSION = 1
_REQUIRED_FIELDS = ('config', 'pose_arch', 'pose_state_dict', 'sr_state_dict', 'keypoint_layout', 'pose_only')
_PLAIN_TYPES = (str, int, float, bool, type(None), torch.Tensor)


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


def _check_plain(value: object, where: str) -> None:
    """Refuse values `weights_only` loading could not read back (so a saved file always loads)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise TypeError(f'{where}: key {key!r} must be str or int')
            _check_plain(item, f'{where}.{key}')
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_plain(item, f'{where}[{index}]')
    elif not isinstance(value, _PLAIN_TYPES):
        raise TypeError(f'{where}: {type(value).__name__} cannot be stored; use str/int/float/bool/None, '
                        'tensors, lists and dicts')


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


def save_checkpoint(path, sr_net, pose_net, config, extra: dict | None = None, *, pose_only: bool = False) -> Path:
    """Write one `.pt` holding the config, both state dicts, the keypoint layout and `extra` (plain types).

    `sr_net` may be None when `pose_only` (the bicubic + pose-net baseline). The pose net's
    architecture and the keypoint layout come from `config` (`pose_arch`, `keypoint_layout`).
    Returns the path written.
    """
    if sr_net is None and not pose_only:
        raise ValueError('sr_net is None: pass pose_only=True to save a pose-net-only baseline')
    extra = dict(extra or {})
    _check_plain(extra, 'extra')
    payload = {
        'format': CHECKPOINT_FORMAT,
        'format_version': CHECKPOINT_VERSION,
        'config': config.to_dict(),
        'pose_arch': config.pose_arch,
        'pose_state_dict': {k: v.detach().cpu() for k, v in pose_net.state_dict().items()},
        'sr_state_dict': None if pose_only else {k: v.detach().cpu() for k, v in sr_net.state_dict().items()},
        'keypoint_layout': config.keypoint_layout,  # copy of the config's, for readers of the file
        'pose_only': pose_only,
        'extra': extra,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def read_checkpoint(path) -> dict:
    """Read and validate a StarPose inference checkpoint; returns its payload dict."""
    payload = read_torch_file(path)
    if not isinstance(payload, dict) or payload.get('format') != CHECKPOINT_FORMAT:
        raise CheckpointError(f'{path}: not a StarPose inference checkpoint (no format={CHECKPOINT_FORMAT!r}); '
                              'pose-net weights alone load with hrnet.load_pose_checkpoint')
    if payload.get('format_version') != CHECKPOINT_VERSION:
        raise CheckpointError(f'{path}: checkpoint format version {payload.get("format_version")!r}, '
                              f'this code reads version {CHECKPOINT_VERSION}')
    missing = [name for name in _REQUIRED_FIELDS if name not in payload]
    if missing:
        raise CheckpointError(f'{path}: checkpoint lacks fields {missing}')
    return payload


def load_inference_model(path, device: str | torch.device = 'cpu'):
    """Build the `StarPoseInference` stored in `path` (eval mode, on `device`)."""
    from starpose_model.config import StarPoseConfig
    from starpose_model.hrnet import build_pose_net
    from starpose_model.inference import StarPoseInference
    from starpose_model.star_pose import StarPoseSR

    payload = read_checkpoint(path)
    try:
        config = StarPoseConfig.from_dict(payload['config'])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f'{path}: invalid config ({error})') from error
    pose_net = build_pose_net(payload['pose_arch'])
    load_state_dict_strict(pose_net, payload['pose_state_dict'], f'{path} (pose net)')
    sr_net = None
    if not payload['pose_only']:
        sr_net = StarPoseSR(config)
        load_state_dict_strict(sr_net, payload['sr_state_dict'], f'{path} (SR net)')
    model = StarPoseInference(sr_net, pose_net, config, pose_only=payload['pose_only'])
    return model.to(device).eval()
