"""What a StarPose model promises every runtime: crop size, target frames, layouts, ONNX metadata.

Exporter, backends, training and the core all read these from here, so a model file and the code
that feeds it cannot disagree. The `starpose.*` ONNX metadata has one writer (`model_metadata`)
and one reader (`model_facts`); the core wraps the facts in its own `ModelInfo`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from starpose_model.keypoints import KEYPOINT_NAMES

if TYPE_CHECKING:
    import onnx

HR_SIZE = (256, 192)  # (H, W) of the super-resolved crop and of the pose net's input
TARGET_FRAMES = ('last', 'center')  # last: causal, for live use; center: offline, T // 2 frames of delay
KEYPOINT_LAYOUTS = tuple(KEYPOINT_NAMES)
METADATA_PREFIX = 'starpose.'


def target_index(window: int, target_frame: str) -> int:
    """Index in a window (oldest first) of the frame that is super-resolved and posed."""
    if target_frame not in TARGET_FRAMES:
        raise ValueError(f'unknown target_frame {target_frame!r}; expected one of {TARGET_FRAMES}')
    return window - 1 if target_frame == 'last' else window // 2


def model_metadata(config, pose_only: bool) -> dict[str, str]:
    """The `starpose.*` metadata an exported file carries for a `StarPoseConfig` (all values are strings).

    `config` is not annotated with its class: config.py imports this module, not the reverse.
    """
    values = {'window': config.window, 'lr_height': config.lr_size[0], 'lr_width': config.lr_size[1],
              'keypoint_layout': config.keypoint_layout, 'target_frame': config.target_frame,
              'config': json.dumps(config.to_dict(), sort_keys=True), 'pose_only': str(pose_only).lower()}
    return {METADATA_PREFIX + key: str(value) for key, value in values.items()}


def onnx_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The `starpose.*` entries of a loaded ONNX model's metadata_props."""
    return {p.key: p.value for p in model.metadata_props if p.key.startswith(METADATA_PREFIX)}


def set_onnx_metadata(model: onnx.ModelProto, values: Mapping[str, str]) -> None:
    """Write `values` into metadata_props, replacing entries with the same keys."""
    kept = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def model_facts(metadata: Mapping[str, str], input_shape: Sequence[object] = ()) -> dict[str, int | str]:
    """Window, LR size, keypoint layout and target frame from `starpose.*` metadata.

    `input_shape` is the `lr_frames` shape ([batch, T, h, w, 3]); its static dimensions stand in
    for missing size keys (files exported by other tools). Raises KeyError naming the missing key
    and ValueError for a value that is not a number.
    """
    facts: dict[str, int | str] = {}
    for axis, key in enumerate(('window', 'lr_height', 'lr_width'), start=1):
        value = metadata.get(METADATA_PREFIX + key)
        if value is None and len(input_shape) > axis and isinstance(input_shape[axis], int):
            value = input_shape[axis]
        if value is None:
            raise KeyError(METADATA_PREFIX + key)
        try:
            facts[key] = int(value)
        except ValueError:
            raise ValueError(f'{METADATA_PREFIX + key} is {value!r}, not a whole number') from None
    facts['keypoint_layout'] = metadata.get(METADATA_PREFIX + 'keypoint_layout', 'coco')
    facts['target_frame'] = metadata.get(METADATA_PREFIX + 'target_frame', 'last')
    return facts
