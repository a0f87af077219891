"""Pose-guided compound loss (eq. 7): L1 on the SR image + lambda * heatmap MSE of a frozen pose net."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from starpose_model.hrnet import imagenet_normalize


def joints_mse(predicted: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor) -> torch.Tensor:
    """HRNet's JointsMSELoss: 0.5 x mean over joints of the MSE of weighted heatmaps.

    ``predicted``/``target`` ``[B, J, H, W]``, ``target_weight`` ``[B, J]`` (or ``[B, J, 1]``, the
    official shape); joints with weight 0 (unlabelled, or the ears in PoseTrack) add nothing.
    """
    weight = target_weight.reshape(target_weight.shape[0], -1)[:, :, None, None]
    return 0.5 * F.mse_loss(predicted * weight, target * weight)


class CompoundLoss(nn.Module):
    """``L1(I_SR, I_HR) + lambda * joints_mse(pose_net(normalize(I_SR)), H)``; the pose net stays frozen.

    The pose net's parameters never get gradients and it stays in eval mode (its BatchNorm
    statistics are the pre-trained ones) even when the loss module is put in training mode;
    gradients still flow through it into the SR image. With ``loss_lambda == 0`` (the paper's
    "w/o compound loss" ablation) the pose net is not run at all and may be ``None``.
    """

    def __init__(self, pose_net: nn.Module | None, loss_lambda: float = 10.0,
                 normalize: Callable[[torch.Tensor], torch.Tensor] = imagenet_normalize) -> None:
        super().__init__()
        if loss_lambda < 0:
            raise ValueError(f'CompoundLoss: loss_lambda must be >= 0, got {loss_lambda}')
        if loss_lambda > 0 and pose_net is None:
            raise ValueError(f'CompoundLoss: loss_lambda={loss_lambda} needs a pose net (got None)')
        self.loss_lambda = float(loss_lambda)
        self.normalize = normalize
        self.pose_net = pose_net
        if pose_net is not None:
            pose_net.requires_grad_(False)
            pose_net.eval()

    def train(self, mode: bool = True) -> CompoundLoss:
        """Switch the mode of everything but the frozen pose net, which stays in eval mode."""
        super().train(mode)
        if self.pose_net is not None:
            self.pose_net.eval()
        return self

    def forward(self, sr_image: torch.Tensor, hr_image: torch.Tensor, heatmaps: torch.Tensor | None = None,
                target_weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Return ``{'total', 'pixel', 'pose'}``; ``pose`` is 0 (and not computed) when lambda is 0."""
        if sr_image.shape != hr_image.shape:
            raise ValueError(f'CompoundLoss: sr_image {list(sr_image.shape)} and hr_image {list(hr_image.shape)} '
                             'must have the same shape')
        pixel = F.l1_loss(sr_image, hr_image)
        if self.loss_lambda == 0:
            return {'total': pixel, 'pixel': pixel, 'pose': pixel.new_zeros(())}
        if heatmaps is None or target_weight is None:
            raise ValueError('CompoundLoss: heatmaps and target_weight are required when loss_lambda > 0')
        predicted = self.pose_net(self.normalize(sr_image))
        if predicted.shape != heatmaps.shape:
            raise ValueError(f'CompoundLoss: pose net heatmaps {list(predicted.shape)} do not match the target '
                             f'heatmaps {list(heatmaps.shape)}')
        pose = joints_mse(predicted.float(), heatmaps.float(), target_weight.float())
        return {'total': pixel + self.loss_lambda * pose, 'pixel': pixel, 'pose': pose}
