"""Pose-net training on HR crops (`starpose-train CONFIG --stage pose`).

STAR-Pose freezes a pose net trained on high-resolution crops. With PoseTrack and an official
HRNet checkpoint you load it (`pose.checkpoint` in the YAML); where no pretrained weights exist
(the synthetic mini-reproduction, new keypoint layouts) this trains one first, with the same
loop as the SR network (`train.fit`, task `tasks.PoseTask`) and HRNet's loss: 0.5 x MSE per joint, weighted by the
joint's target weight. The result is a bare state dict with the official names, which
`hrnet.load_pose_checkpoint` reads like any official checkpoint.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from starpose_training.state import atomic_save


def hrnet_init(pose_net: nn.Module) -> nn.Module:
    """HRNet's own initialisation for training from scratch: convs N(0, 0.001), zero biases, BN 1/0.

    PyTorch's default init makes the untrained heatmaps O(1), so the first hundreds of steps only
    shrink them towards zero; HRNet starts from near-zero heatmaps instead.
    """
    for module in pose_net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, std=0.001)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return pose_net


def save_pose_weights(pose_net: nn.Module, path: str | Path) -> Path:
    """Write the pose net as a bare state dict with the official HRNet names."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({k: v.detach().cpu() for k, v in pose_net.state_dict().items()}, path)
    return path
