"""HRNet pose networks whose state-dict names equal the official deep-high-resolution-net.pytorch model.

Module names and shapes follow the official `PoseHighResolutionNet`, so `pose_hrnet_w48_256x192.pth`
loads with `strict=True`; mmpose checkpoints (`backbone.*` + `head.final_layer.*` or
`keypoint_head.final_layer.*`) load through the same `load_pose_checkpoint`. The official code
keeps `None` in its module lists where nothing is applied; this one uses `nn.Identity` there,
which has no parameters and so leaves the state dict identical.

Input: ImageNet-normalised RGB `[B, 3, 256, 192]` (see `imagenet_normalize`); output: heatmaps
`[B, num_joints, 64, 48]` (stride 4).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from starpose_model.torch_files import CheckpointError, load_state_dict_strict, read_torch_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """Normalise RGB images in [0, 1], `[B, 3, H, W]`, with the ImageNet mean/std the pose nets expect."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


@dataclass(frozen=True)
class StageConfig:
    """One multi-resolution stage: `num_modules` exchange units over `len(widths)` branches."""

    num_modules: int
    blocks_per_branch: int
    widths: tuple[int, ...]


@dataclass(frozen=True)
class HRNetConfig:
    """Shape of an HRNet: stem, the Bottleneck `layer1`, then stages 2-4 of BasicBlock branches."""

    stem_width: int = 64
    layer1_planes: int = 64
    layer1_blocks: int = 4
    stages: tuple[StageConfig, ...] = field(default_factory=tuple)
    num_joints: int = 17
    final_kernel: int = 1


def _official_stages(width: int) -> tuple[StageConfig, ...]:
    """Stages 2-4 of the official W32/W48 configurations (1, 4 and 3 modules of 4 blocks)."""
    return (
        StageConfig(1, 4, (width, 2 * width)),
        StageConfig(4, 4, (width, 2 * width, 4 * width)),
        StageConfig(3, 4, (width, 2 * width, 4 * width, 8 * width)),
    )


POSE_NET_CONFIGS: dict[str, HRNetConfig] = {
    'hrnet_w48': HRNetConfig(stages=_official_stages(48)),
    'hrnet_w32': HRNetConfig(stages=_official_stages(32)),
    # CPU configuration for the `tiny` STAR-Pose model (docs/pose_nets.md explains the choice):
    # the same topology, thin and shallow; the stride-4 stem makes the 256x192 input cheap.
    'hrnet_tiny': HRNetConfig(
        stem_width=16, layer1_planes=8, layer1_blocks=1,
        stages=(StageConfig(1, 1, (8, 16)), StageConfig(1, 1, (8, 16, 32)), StageConfig(1, 1, (8, 16, 32, 64))),
    ),
    # The bundled real-footage model's pose net: hrnet_tiny's shape at twice the widths (0.70 M
    # parameters, about 4x the MACs); tiny's 8-channel branch underfits real people.
    'hrnet_small': HRNetConfig(
        stem_width=32, layer1_planes=16, layer1_blocks=1,
        stages=(StageConfig(1, 1, (16, 32)), StageConfig(1, 1, (16, 32, 64)), StageConfig(1, 1, (16, 32, 64, 128))),
    ),
}


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             relu: bool = True) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ ReLU): the `Sequential(conv, bn[, relu])` unit of the official names."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (channels unchanged in every HRNet branch)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual 3x3-3x3."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 expansion) residual block of `layer1`; `downsample` matches channels."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _conv_bn(in_channels, out_channels, 1, relu=False) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual 1x1-3x3-1x1."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _fuse_path(widths: tuple[int, ...], source: int, target: int) -> nn.Module:
    """Resample branch `source` to branch `target`'s resolution and width.

    Lower resolution -> 1x1 conv + BN + nearest upsampling; higher -> a chain of stride-2 3x3
    convs (ReLU between them, not after the last); same branch -> identity.
    """
    if source == target:
        return nn.Identity()
    if source > target:
        return nn.Sequential(
            nn.Conv2d(widths[source], widths[target], 1, bias=False),
            nn.BatchNorm2d(widths[target]),
            nn.Upsample(scale_factor=2 ** (source - target), mode='nearest'),
        )
    steps = target - source
    return nn.Sequential(*(
        _conv_bn(widths[source], widths[target] if k == steps - 1 else widths[source], 3, stride=2,
                 relu=k < steps - 1)
        for k in range(steps)
    ))


class HighResolutionModule(nn.Module):
    """Parallel BasicBlock branches, then every output branch sums all inputs resampled to it."""

    def __init__(self, widths: tuple[int, ...], blocks_per_branch: int, multi_scale_output: bool = True):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(width) for _ in range(blocks_per_branch))) for width in widths
        )
        num_outputs = len(widths) if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_path(widths, source, target) for source in range(len(widths)))
            for target in range(num_outputs)
        )
        self.relu = nn.ReLU(inplace=False)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-resolution features (highest first) -> fused features (all, or only the highest)."""
        features = [branch(x) for branch, x in zip(self.branches, features, strict=True)]
        fused = []
        for paths in self.fuse_layers:
            total = paths[0](features[0])
            for path, x in zip(paths[1:], features[1:], strict=True):
                total = total + path(x)
            fused.append(self.relu(total))
        return fused


def _transition(previous: tuple[int, ...], current: tuple[int, ...]) -> nn.ModuleList:
    """Adapt the previous stage's branches to the next stage's; the new branch downsamples the lowest."""
    layers: list[nn.Module] = []
    for index, width in enumerate(current):
        if index < len(previous):
            layers.append(nn.Identity() if previous[index] == width else _conv_bn(previous[index], width, 3))
        else:
            # Official layout: a Sequential of (conv, bn, relu) units, one per stride-2 step.
            steps = index + 1 - len(previous)
            layers.append(nn.Sequential(*(
                _conv_bn(previous[-1], width if k == steps - 1 else previous[-1], 3, stride=2)
                for k in range(steps)
            )))
    return nn.ModuleList(layers)


class PoseHRNet(nn.Module):
    """HRNet pose network: stride-4 stem, Bottleneck `layer1`, stages 2-4, 1x1 heatmap head."""

    def __init__(self, config: HRNetConfig):
        super().__init__()
        if len(config.stages) != 3:
            raise ValueError(f'HRNet needs exactly 3 stage configs (stages 2-4), got {len(config.stages)}')
        self.config = config
        self.conv1 = nn.Conv2d(3, config.stem_width, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(config.stem_width)
        self.conv2 = nn.Conv2d(config.stem_width, config.stem_width, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(config.stem_width)
        self.relu = nn.ReLU(inplace=True)

        layer1_width = config.layer1_planes * Bottleneck.expansion
        self.layer1 = nn.Sequential(*(
            Bottleneck(config.stem_width if i == 0 else layer1_width, config.layer1_planes)
            for i in range(config.layer1_blocks)
        ))
        previous: tuple[int, ...] = (layer1_width,)
        for number, stage in enumerate(config.stages, start=2):
            is_last = number == 4
            setattr(self, f'transition{number - 1}', _transition(previous, stage.widths))
            setattr(self, f'stage{number}', nn.Sequential(*(
                HighResolutionModule(stage.widths, stage.blocks_per_branch,
                                     multi_scale_output=not (is_last and m == stage.num_modules - 1))
                for m in range(stage.num_modules)
            )))
            previous = stage.widths
        self.final_layer = nn.Conv2d(previous[0], config.num_joints, config.final_kernel, 1,
                                     config.final_kernel // 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised `[B, 3, H, W]` -> heatmaps `[B, num_joints, H / 4, W / 4]`."""
        x = self.relu(self.bn1(self.conv1(images)))
        x = self.relu(self.bn2(self.conv2(x)))
        features = [self.layer1(x)]
        for transition, stage in ((self.transition1, self.stage2), (self.transition2, self.stage3),
                                  (self.transition3, self.stage4)):
            # Existing branches pass through their transition; a new branch grows from the lowest.
            inputs = [layer(features[min(i, len(features) - 1)]) for i, layer in enumerate(transition)]
            features = stage(inputs)
        return self.final_layer(features[0])


def build_pose_net(arch: str = 'hrnet_w48') -> PoseHRNet:
    """Build a pose net by name: `hrnet_w48`, `hrnet_w32` (official shapes) or `hrnet_tiny` (CPU)."""
    if arch not in POSE_NET_CONFIGS:
        raise ValueError(f'unknown pose net {arch!r}; choose one of {sorted(POSE_NET_CONFIGS)}')
    return PoseHRNet(POSE_NET_CONFIGS[arch])


# Prefixes that wrap the official names in mmpose (1.x head, 0.x head, backbone) and DataParallel.
_MMPOSE_HEAD_PREFIXES = ('head.', 'keypoint_head.')
_MMPOSE_BACKBONE_PREFIX = 'backbone.'
_DATA_PARALLEL_PREFIX = 'module.'


def to_official_names(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an mmpose / DataParallel state dict to the official names (unchanged if already official)."""
    renamed = {}
    for key, value in state_dict.items():
        name = key.removeprefix(_DATA_PARALLEL_PREFIX)
        if name.startswith(_MMPOSE_BACKBONE_PREFIX):
            name = name[len(_MMPOSE_BACKBONE_PREFIX):]
        else:
            for prefix in _MMPOSE_HEAD_PREFIXES:
                if name.startswith(prefix + 'final_layer.'):
                    name = name[len(prefix):]
                    break
        renamed[name] = value
    return renamed


def _extract_state_dict(payload: object, path: str) -> dict[str, torch.Tensor]:
    """Find the tensor dict in a bare official state dict or an mmpose `{'meta', 'state_dict'}` file."""
    if isinstance(payload, dict) and isinstance(payload.get('state_dict'), dict):
        payload = payload['state_dict']
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise CheckpointError(f'{path}: not a pose-net checkpoint (expected a state dict of tensors, '
                              f'bare or under "state_dict"; got {type(payload).__name__})')
    return payload


def load_pose_checkpoint(model: nn.Module, path, trusted: bool = False) -> nn.Module:
    """Load official HRNet or mmpose HRNet weights into `model` strictly; returns the model.

    Accepts a bare official state dict, an mmpose `{'meta', 'state_dict'}` file (0.x or 1.x head
    names) and `module.`-prefixed keys. Files are read with `weights_only=True`; `trusted=True`
    allows full unpickling for checkpoints whose metadata holds other Python objects.
    """
    payload = read_torch_file(path, trusted=trusted)
    state_dict = to_official_names(_extract_state_dict(payload, str(path)))
    load_state_dict_strict(model, state_dict, f'pose checkpoint {path}')
    return model
