"""Configurations of the STAR-Pose network: the paper's, a CPU-sized ``tiny`` one and the ablations.

Every switch of the paper's ablation study (Table 4) is a field, so a training YAML selects an
ablation by name or by overrides instead of by code edits::

    get_config('paper', window=1)                  # (a) without temporal context
    get_config('paper', attention_kernel='relu')   # (b) ReLU instead of SCLeakyReLU
    get_config('paper', use_cnn_branch=False)      # (c) without CNN branch and fusion
    get_config('paper', loss_lambda=0.0)           # (d) pixel loss only
    get_config('paper', ablation='no_temporal')    # the same, by the ablation's name
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from starpose_model.contract import HR_SIZE, TARGET_FRAMES, target_index

ABLATIONS: dict[str, dict[str, object]] = {
    'no_temporal': {'window': 1},
    'relu_kernel': {'attention_kernel': 'relu'},
    'no_cnn_branch': {'use_cnn_branch': False},
    'pixel_loss_only': {'loss_lambda': 0.0},
}


@dataclass(frozen=True)
class StarPoseConfig:
    """Hyper-parameters of the SR network, the pose net it feeds and the compound loss.

    ``fusion_stages`` lists ``(transformer_layers_done, cnn_blocks_done)`` pairs: after that many
    Transformer layers, the AFFM fuses their output with the CNN branch's output after that many
    blocks and adds it (times beta) to the next layer's input.
    """

    name: str = 'paper'
    scale: int = 2
    window: int = 5
    target_frame: str = 'last'
    channels: int = 32
    embed_dim: int = 256
    depth: int = 8
    heads: int = 8
    mlp_ratio: float = 2.0
    patch_size: tuple[int, int, int] = (1, 8, 8)
    pos_dim: int = 64
    aggregation_kernels: tuple[int, ...] = (3, 5)
    attention_kernel: str = 'scleaky'
    attention_eps: float = 1e-5
    use_cnn_branch: bool = True
    cnn_channels: int = 64
    cnn_expansion: int = 4
    cnn_fused_blocks: int = 3
    cnn_mbconv_blocks: int = 5
    fusion_stages: tuple[tuple[int, int], ...] = ((2, 3), (4, 6), (6, 8))
    loss_lambda: float = 10.0
    pose_arch: str = 'hrnet_w48'
    keypoint_layout: str = 'posetrack'

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def lr_size(self) -> tuple[int, int]:
        """(h, w) of the low-resolution input crops."""
        return HR_SIZE[0] // self.scale, HR_SIZE[1] // self.scale

    @property
    def target_index(self) -> int:
        """Index in the window of the frame that is super-resolved."""
        return target_index(self.window, self.target_frame)

    @property
    def token_grid(self) -> tuple[int, int, int]:
        """(T', H', W') of the patch-token grid."""
        (pt, ph, pw), (h, w) = self.patch_size, self.lr_size
        return self.window // pt, h // ph, w // pw

    def replace(self, **overrides) -> StarPoseConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        """Plain-data form (for checkpoints and ONNX metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StarPoseConfig:
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'StarPoseConfig: unknown field(s) {unknown}; known fields: {sorted(known)}')
        fixed = dict(data)
        for key in ('patch_size', 'aggregation_kernels'):
            if key in fixed:
                fixed[key] = tuple(fixed[key])
        if 'fusion_stages' in fixed:
            fixed['fusion_stages'] = tuple(tuple(stage) for stage in fixed['fusion_stages'])
        return cls(**fixed)


def _validate(cfg: StarPoseConfig) -> None:
    problems = []
    if cfg.scale not in (2, 4):
        problems.append(f'scale must be 2 or 4, got {cfg.scale}')
    if cfg.target_frame not in TARGET_FRAMES:
        problems.append(f'target_frame must be one of {TARGET_FRAMES}, got {cfg.target_frame!r}')
    if cfg.attention_kernel not in ('scleaky', 'relu'):
        problems.append(f"attention_kernel must be 'scleaky' or 'relu', got {cfg.attention_kernel!r}")
    if cfg.window < 1:
        problems.append(f'window must be >= 1, got {cfg.window}')
    if len(cfg.patch_size) != 3:
        problems.append(f'patch_size must be (t, h, w), got {cfg.patch_size}')
    elif cfg.scale in (2, 4):
        pt, ph, pw = cfg.patch_size
        h, w = cfg.lr_size
        if ph != pw:
            problems.append(f'patch_size {cfg.patch_size}: the spatial patch must be square (ph == pw)')
        if cfg.window % pt or h % ph or w % pw:
            problems.append(f'patch_size {cfg.patch_size} must divide the input volume (T, h, w) = '
                            f'{(cfg.window, h, w)}')
    if cfg.embed_dim % cfg.heads:
        problems.append(f'embed_dim {cfg.embed_dim} must be divisible by heads {cfg.heads}')
    if cfg.pos_dim % 2:
        problems.append(f'pos_dim must be even, got {cfg.pos_dim}')
    if any(k % 2 == 0 for k in cfg.aggregation_kernels):
        problems.append(f'aggregation_kernels must be odd, got {cfg.aggregation_kernels}')
    if cfg.loss_lambda < 0:
        problems.append(f'loss_lambda must be >= 0, got {cfg.loss_lambda}')
    previous = (0, 0)
    total_blocks = cfg.cnn_fused_blocks + cfg.cnn_mbconv_blocks
    for stage in cfg.fusion_stages:
        layers, blocks = stage
        if not (previous[0] < layers < cfg.depth and previous[1] < blocks <= total_blocks):
            problems.append(f'fusion_stages {cfg.fusion_stages}: each (layers, blocks) must increase, with '
                            f'layers < depth ({cfg.depth}) and blocks <= CNN blocks ({total_blocks})')
            break
        previous = stage
    if problems:
        raise ValueError('StarPoseConfig: ' + '; '.join(problems))


_PRESETS: dict[str, StarPoseConfig] = {
    'paper': StarPoseConfig(),
    # Sized for CPU serving (see docs/model.md): 64x48 input, same topology, narrow widths.
    'tiny': StarPoseConfig(
        name='tiny', scale=4, channels=16, embed_dim=64, depth=4, heads=2, pos_dim=16,
        cnn_channels=32, cnn_expansion=2, fusion_stages=((1, 3), (2, 6), (3, 8)),
        pose_arch='hrnet_tiny'),
    # The bundled default: `tiny`'s SR network in front of the wider `hrnet_small` pose net.
    'small': StarPoseConfig(
        name='small', scale=4, channels=16, embed_dim=64, depth=4, heads=2, pos_dim=16,
        cnn_channels=32, cnn_expansion=2, fusion_stages=((1, 3), (2, 6), (3, 8)),
        target_frame='last', pose_arch='hrnet_small'),
}


def config_names() -> tuple[str, ...]:
    """Names accepted by ``get_config``."""
    return tuple(_PRESETS)


def get_config(name: str = 'paper', ablation: str | None = None, **overrides) -> StarPoseConfig:
    """A preset by name, optionally with one of ``ABLATIONS`` and field overrides applied in that order."""
    if name not in _PRESETS:
        raise ValueError(f'unknown config {name!r}; choose one of {config_names()}')
    cfg = _PRESETS[name]
    if ablation is not None:
        if ablation not in ABLATIONS:
            raise ValueError(f'unknown ablation {ablation!r}; choose one of {tuple(ABLATIONS)}')
        cfg = cfg.replace(**ABLATIONS[ablation])
    return cfg.replace(**overrides) if overrides else cfg
