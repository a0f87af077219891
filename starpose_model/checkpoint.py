"""One-file inference checkpoints: configuration, SR and pose-net weights, keypoint layout.

`save_checkpoint` writes a plain dict of tensors and built-in types so that
`load_inference_model` can read it with `torch.load(weights_only=True)` (no code runs on load).
The format is versioned; an unknown version or a file that is not such a checkpoint is
rejected with an error naming the file and what is wrong.
"""
from __future__ import annotations

from pathlib import Path

import torch

from starpose_model.config import StarPoseConfig
from starpose_model.hrnet import build_pose_net
from starpose_model.inference import StarPoseInference
from starpose_model.star_pose import StarPoseSR
from starpose_model.torch_files import CheckpointError, load_state_dict_strict, read_torch_file

CHECKPOINT_FORMAT = 'starpose-inference'
CHECKPOINT_VERSION = 1
_REQUIRED_FIELDS = ('config', 'pose_arch', 'pose_state_dict', 'sr_state_dict', 'keypoint_layout', 'pose_only')
_PLAIN_TYPES = (str, int, float, bool, type(None), torch.Tensor)


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
