"""The whole inference path as one module: uint8 LR window in, SR crop + keypoints + heatmaps out.

This is the graph every backend runs (PyTorch directly, ONNX Runtime and TensorRT through
`starpose_model.export`), so that no runtime does per-pixel work in Python:

| tensor | dtype | shape | meaning |
| `lr_frames` (in) | uint8 | `[B, T, h, w, 3]` | RGB LR crops, oldest first |
| `sr_image` | uint8 | `[B, 256, 192, 3]` | RGB super-resolved crop of the target frame |
| `keypoints` | float32 | `[B, 17, 3]` | x, y in HR-crop pixels, score (heatmap maximum) |
| `heatmaps` | float32 | `[B, 17, 64, 48]` | pose-net heatmaps |

With `pose_only` the SR net is replaced by bicubic upsampling of the target frame: the
"bicubic + pose net" baseline of the paper's tables, behind the same interface.
`with_method(model, name)` gives a model's pose net behind each of `METHODS` (STAR-Pose itself,
bicubic, bilinear resize), so every tool compares the same three the same way.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from starpose_model.blocks import BicubicUpsample
from starpose_model.config import StarPoseConfig
from starpose_model.contract import HR_SIZE
from starpose_model.heatmaps import HEATMAP_STRIDE, decode_argmax, flip_test
from starpose_model.hrnet import imagenet_normalize
from starpose_model.keypoints import KEYPOINT_NAMES

INPUT_NAMES = ('lr_frames',)
OUTPUT_NAMES = ('sr_image', 'keypoints', 'heatmaps')


class StarPoseInference(nn.Module):
    """SR net + pose net + in-graph decoding, uint8 in / uint8 + float32 out (see module docstring).

    `flip_test` averages the pose net's heatmaps with those of the mirrored SR image (official
    one-pixel shift); it doubles the pose-net cost and is meant for offline evaluation.
    """

    def __init__(self, sr_net: nn.Module | None, pose_net: nn.Module, config: StarPoseConfig, *,
                 pose_only: bool = False, flip_test: bool = False):
        super().__init__()
        if config.keypoint_layout not in KEYPOINT_NAMES:
            raise ValueError(f'unknown keypoint layout {config.keypoint_layout!r}; '
                             f'choose one of {sorted(KEYPOINT_NAMES)}')
        if sr_net is None and not pose_only:
            raise ValueError('sr_net is None: pass pose_only=True for the bicubic + pose-net baseline')
        self.sr_net = None if pose_only else sr_net
        self.upsample = BicubicUpsample(config.scale) if pose_only else None
        self.pose_net = pose_net
        self.config = config
        self.keypoint_layout = config.keypoint_layout
        self.pose_only = pose_only
        self.flip_test = flip_test
        self.window = config.window
        self.lr_size = config.lr_size
        self.target_index = config.target_index

    def check_input(self, lr_frames: torch.Tensor) -> None:
        """Raise ValueError naming the mismatch if `lr_frames` is not uint8 `[B, T, h, w, 3]` for this model."""
        expected = (self.window, *self.lr_size, 3)
        if lr_frames.dtype != torch.uint8 or lr_frames.dim() != 5 or tuple(lr_frames.shape[1:]) != expected:
            raise ValueError(f'lr_frames must be uint8 [B, {", ".join(map(str, expected))}], '
                             f'got {lr_frames.dtype} {list(lr_frames.shape)}')

    def super_resolve(self, lr_frames: torch.Tensor) -> torch.Tensor:
        """uint8 `[B, T, h, w, 3]` -> SR image float `[B, 3, 256, 192]` clamped to [0, 1]."""
        # uint8 is touched only by Casts (TensorRT accepts uint8 I/O only through Cast).
        frames = lr_frames.float().permute(0, 1, 4, 2, 3) / 255.0
        if self.pose_only:
            hr = self.upsample(frames[:, self.target_index])
        else:
            hr = self.sr_net(frames)
        return hr.clamp(0.0, 1.0)

    def forward(self, lr_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return `(sr_image, keypoints, heatmaps)` for uint8 `lr_frames [B, T, h, w, 3]`."""
        if not torch.compiler.is_compiling() and not torch.jit.is_tracing():
            self.check_input(lr_frames)
        sr = self.super_resolve(lr_frames)
        pose_input = imagenet_normalize(sr)
        if self.flip_test:
            heatmaps = flip_test(self.pose_net, pose_input, self.keypoint_layout)
        else:
            heatmaps = self.pose_net(pose_input)
        heatmaps = heatmaps.float()
        decoded = decode_argmax(heatmaps)
        keypoints = torch.cat([decoded[..., :2] * HEATMAP_STRIDE, decoded[..., 2:]], dim=-1)
        sr_image = torch.round(sr * 255.0).permute(0, 2, 3, 1).to(torch.uint8)
        return sr_image, keypoints, heatmaps


class ResizedLRPose(StarPoseInference):
    """Baseline "pose net on the LR crop": the target LR crop resized to the net's input bilinearly.

    Bilinear is what a top-down pose pipeline's own input resize (an affine warp with linear
    interpolation) does to a small crop; the bicubic baseline is StarPoseInference's `pose_only`.
    """

    def super_resolve(self, lr_frames: torch.Tensor) -> torch.Tensor:
        """Resize the target LR frame to 256 x 192 with bilinear interpolation."""
        frame = lr_frames[:, self.target_index].permute(0, 3, 1, 2).float() / 255.0
        return F.interpolate(frame, size=HR_SIZE, mode='bilinear', align_corners=False).clamp(0.0, 1.0)


METHODS = ('star_pose', 'bicubic', 'resize')
METHOD_TITLES = {'star_pose': 'STAR-Pose', 'bicubic': 'Bicubic + pose net', 'resize': 'Pose net on LR (resize)'}


def with_method(model: StarPoseInference, method: str) -> StarPoseInference:
    """`model` itself (`star_pose`) or its pose net behind bicubic / bilinear upsampling, in eval mode."""
    if method == 'star_pose':
        if model.pose_only:
            raise ValueError('method star_pose needs a model with an SR network; this checkpoint is pose-net only')
        return model
    if method == 'bicubic':
        return StarPoseInference(None, model.pose_net, model.config, pose_only=True).eval()
    if method == 'resize':
        return ResizedLRPose(None, model.pose_net, model.config, pose_only=True).eval()
    raise ValueError(f'unknown method {method!r}; choose one of {METHODS}')
