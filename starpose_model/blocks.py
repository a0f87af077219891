"""Convolution blocks of the CNN branch: EfficientNetV2's Fused-MBConv and MobileNetV3's MBConv."""
from __future__ import annotations

from torch import nn


class ConvNormAct(nn.Sequential):
    """Conv2d (same padding, no bias) + BatchNorm + optional activation (SiLU by default)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, groups: int = 1,
                 act: bool = True) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.SiLU() if act else nn.Identity(),
        )


class SqueezeExcite(nn.Module):
    """Channel gating from globally pooled features (MobileNetV3)."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, reduced, 1), nn.SiLU(),
            nn.Conv2d(reduced, channels, 1), nn.Sigmoid())

    def forward(self, x):
        """Gate ``[B, C, H, W]`` channel-wise."""
        return x * self.gate(x)


class FusedMBConv(nn.Module):
    """3x3 conv expanding the channels, 1x1 projection back; residual when the shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int = 4, kernel_size: int = 3) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.body = nn.Sequential(ConvNormAct(in_channels, hidden, kernel_size),
                                  ConvNormAct(hidden, out_channels, 1, act=False))
        self.residual = in_channels == out_channels

    def forward(self, x):
        """``[B, C_in, H, W]`` -> ``[B, C_out, H, W]``."""
        out = self.body(x)
        return x + out if self.residual else out


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise conv, squeeze-excite, 1x1 projection."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int = 4, kernel_size: int = 3) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.body = nn.Sequential(
            ConvNormAct(in_channels, hidden, 1),
            ConvNormAct(hidden, hidden, kernel_size, groups=hidden),
            SqueezeExcite(hidden, max(8, in_channels // 4)),
            ConvNormAct(hidden, out_channels, 1, act=False))
        self.residual = in_channels == out_channels

    def forward(self, x):
        """``[B, C_in, H, W]`` -> ``[B, C_out, H, W]``."""
        out = self.body(x)
        return x + out if self.residual else out
