"""What one training step computes: the SR task of the paper and the pose net's own task.

A task gives `fit` the module to optimise, the loss of a batch and the TensorBoard pictures; the
loop itself (`train.fit`) knows no task. The SR task holds the frozen pose net inside its
compound loss (eq. 7), which freezes it (eval mode, no gradients); the pose task trains that pose
net first where no pretrained one exists.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from starpose_model.contract import target_index
from starpose_model.hrnet import build_pose_net, imagenet_normalize, load_pose_checkpoint
from starpose_model.loss import joints_mse


def load_pose_net(path: Path, arch: str) -> nn.Module:
    """The pose net the SR network is trained against, loaded strictly (`CompoundLoss` freezes it)."""
    if not path.is_file():
        raise FileNotFoundError(f'pose net weights {path} do not exist: set pose.checkpoint to an official/mmpose '
                                f'HRNet checkpoint, or give pose.train and run the pose stage first')
    return load_pose_checkpoint(build_pose_net(arch), path)


def target_frame(lr_frames: torch.Tensor, which: str) -> torch.Tensor:
    """The target frame of `[B, T, 3, h, w]` windows (`last` = causal, `center` = offline)."""
    return lr_frames[:, target_index(lr_frames.shape[1], which)]


def image_grid(columns: list[torch.Tensor], max_rows: int = 4) -> torch.Tensor:
    """`[3, H, W]` picture: one row per sample, one column per tensor (`[B, 3, H, W]` in [0, 1])."""
    height, width = columns[-1].shape[-2:]
    resized = [F.interpolate(c[:max_rows].float(), size=(height, width), mode='nearest') for c in columns]
    rows = torch.cat(resized, dim=3)                   # [rows, 3, H, W * columns]
    return torch.cat(list(rows), dim=1).clamp(0, 1)    # [3, H * rows, W * columns]


def heatmap_picture(image: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
    """HR image darkened, with the max over joint heatmaps in red (for TensorBoard)."""
    peak = heatmaps.float().amax(dim=1, keepdim=True).clamp(0, 1)
    peak = F.interpolate(peak, size=image.shape[-2:], mode='bilinear', align_corners=False)
    return (0.5 * image.float() + torch.cat([peak, torch.zeros_like(peak), torch.zeros_like(peak)], 1)).clamp(0, 1)


@dataclass
class SRTask:
    """STAR-Pose SR training: trainable SR net, the compound loss of eq. 7 (with the frozen pose net)."""

    sr_net: torch.nn.Module
    loss_fn: Any  # starpose_model.loss.CompoundLoss: holds the frozen pose net and lambda
    target: str = 'center'
    name: str = 'sr'

    @property
    def model(self) -> torch.nn.Module:
        """The module the optimiser trains."""
        return self.sr_net

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        """Compound loss of one batch; `model` is the (possibly DDP-wrapped) SR net."""
        sr = model(batch['lr_frames'])
        terms = self.loss_fn(sr.float(), batch['hr_image'], batch['heatmaps'], batch['target_weight'])
        return terms['total'], {'pixel': terms['pixel'], 'pose': terms['pose']}

    @torch.no_grad()
    def pictures(self, batch: dict) -> torch.Tensor:
        """LR (target frame) | bicubic | SR | HR | SR heatmaps | GT heatmaps."""
        lr = target_frame(batch['lr_frames'], self.target)
        hr = batch['hr_image']
        bicubic = F.interpolate(lr.float(), size=hr.shape[-2:], mode='bicubic', align_corners=False)
        sr = self.sr_net(batch['lr_frames']).float().clamp(0, 1)
        predicted = self.loss_fn.pose_net(imagenet_normalize(sr))
        return image_grid([lr, bicubic, sr, hr, heatmap_picture(sr, predicted),
                           heatmap_picture(hr, batch['heatmaps'])])


@dataclass
class PoseTask:
    """Trainable pose net on ImageNet-normalised HR crops."""

    pose_net: nn.Module
    name: str = 'pose'

    @property
    def model(self) -> nn.Module:
        """The module the optimiser trains."""
        return self.pose_net

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        """Weighted heatmap MSE of one batch; `model` is the (possibly DDP-wrapped) pose net."""
        predicted = model(imagenet_normalize(batch['hr_image']))
        loss = joints_mse(predicted.float(), batch['heatmaps'], batch['target_weight'])
        return loss, {}

    @torch.no_grad()
    def pictures(self, batch: dict) -> torch.Tensor:
        """HR crop | predicted heatmaps | ground-truth heatmaps."""
        hr = batch['hr_image']
        predicted = self.pose_net(imagenet_normalize(hr))
        return image_grid([hr, heatmap_picture(hr, predicted), heatmap_picture(hr, batch['heatmaps'])])
