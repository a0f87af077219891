"""The STAR-Pose super-resolution network (paper section 3, SPEC section 2).

Data flow for ``[B, T, 3, h, w]`` low-resolution frames in [0, 1]::

    shallow 3x3 conv per frame            -> [B, T, C, h, w]
    3D patch unfold + linear embedding    -> tokens [B, T'*H'*W', D]     (+ 3D PE, eq. 1)
    8 linear-attention Transformer layers <- AFFM(tokens, CNN branch) * beta after some layers
    target frame's tokens -> fold back    -> [B, C, h, w] (+ its shallow features)
    conv + pixel shuffle (x scale)        -> [B, 3, 256, 192] (+ bicubic upsampling of the target frame)

The CNN branch (3 Fused-MBConv + 5 MBConv) runs on the same token grid as maps, independent of
the Transformer; the Adaptive Feature Fusion Module (eqs. 4-6) feeds it into the token stream.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from starpose_model.attention import MultiScaleLinearAttention, maps_to_tokens, tokens_to_maps
from starpose_model.blocks import BicubicUpsample, ConvNormAct, FusedMBConv, MBConv
from starpose_model.config import StarPoseConfig


def sinusoidal_encoding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sin/cos encoding of integer positions: ``[n]`` -> ``[n, dim]``."""
    frequencies = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device)
                            * (-math.log(10000.0) / dim))
    angles = positions.float()[:, None] * frequencies[None, :]
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)


class PositionalEncoding3D(nn.Module):
    """Eq. 1: ``concat(PE_t(t), PE_w(w), PE_h(h)) W_pos`` for every token of a (T', H', W') grid."""

    def __init__(self, pos_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.pos_dim = pos_dim
        self.w_pos = nn.Linear(3 * pos_dim, embed_dim, bias=False)

    def forward(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        """``[1, T'*H'*W', D]`` in token order (t, h, w)."""
        t, h, w = grid
        pe_t, pe_h, pe_w = (sinusoidal_encoding(torch.arange(n, device=device), self.pos_dim) for n in (t, h, w))
        table = torch.cat((pe_t[:, None, None].expand(t, h, w, -1),
                           pe_w[None, None, :].expand(t, h, w, -1),
                           pe_h[None, :, None].expand(t, h, w, -1)), dim=-1)
        return self.w_pos(table.reshape(1, t * h * w, 3 * self.pos_dim))


class PatchEmbed3D(nn.Module):
    """Non-overlapping (pt, ph, pw) patches of the feature volume, each flattened and linearly embedded.

    Unfold + linear is computed as one strided conv (kernel = stride = patch) over frames whose
    pt time steps are stacked as channels: the same map, without the 8-D transpose an explicit
    unfold needs (the slowest node of the tiny model in ONNX Runtime).
    """

    def __init__(self, channels: int, patch_size: tuple[int, int, int], embed_dim: int) -> None:
        super().__init__()
        pt, ph, pw = patch_size
        self.frames_per_patch = pt
        self.proj = nn.Conv2d(pt * channels, embed_dim, kernel_size=(ph, pw), stride=(ph, pw))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, T, C, h, w]`` -> token maps ``[B*T', D, H', W']`` (``maps_to_tokens`` gives the tokens)."""
        b, t, c, h, w = features.shape
        return self.proj(features.reshape(b * (t // self.frames_per_patch), self.frames_per_patch * c, h, w))


class PatchUnembed(nn.Module):
    """Tokens of one temporal slice back to a feature map: linear to patch pixels (1x1 conv), then fold.

    The fold is a pixel shuffle by the (square) spatial patch size.
    """

    def __init__(self, channels: int, patch_size: tuple[int, int, int], embed_dim: int) -> None:
        super().__init__()
        pt, ph, _ = patch_size
        self.channels = channels
        self.frames_per_patch = pt
        self.proj = nn.Conv2d(embed_dim, pt * channels * ph * ph, 1)
        self.fold = nn.PixelShuffle(ph)

    def forward(self, tokens: torch.Tensor, grid_hw: tuple[int, int], frame_in_patch: int) -> torch.Tensor:
        """``[B, H'*W', D]`` -> ``[B, C, H'*ph, W'*pw]`` for frame ``frame_in_patch`` of the patch."""
        patches = self.fold(self.proj(tokens_to_maps(tokens, (1, *grid_hw))))
        b, _, h, w = patches.shape
        return patches.reshape(b, self.frames_per_patch, self.channels, h, w)[:, frame_in_patch]


class TransformerLayer(nn.Module):
    """Pre-norm layer: multi-scale linear attention and an MLP, each with a residual."""

    def __init__(self, cfg: StarPoseConfig) -> None:
        super().__init__()
        dim = cfg.embed_dim
        hidden = int(dim * cfg.mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attention = MultiScaleLinearAttention(dim, cfg.heads, cfg.attention_kernel, cfg.aggregation_kernels,
                                                   cfg.attention_eps)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``[B, N, D]`` tokens on ``grid`` -> same shape."""
        x = x + self.attention(self.norm1(x), grid)
        return x + self.mlp(self.norm2(x))


class CNNBranch(nn.Module):
    """1x1 stem from the embedded tokens (as maps), then Fused-MBConv blocks, then MBConv blocks."""

    def __init__(self, cfg: StarPoseConfig) -> None:
        super().__init__()
        width, expansion = cfg.cnn_channels, cfg.cnn_expansion
        self.stem = ConvNormAct(cfg.embed_dim, width, 1)
        self.blocks = nn.ModuleList(
            [FusedMBConv(width, width, expansion) for _ in range(cfg.cnn_fused_blocks)]
            + [MBConv(width, width, expansion) for _ in range(cfg.cnn_mbconv_blocks)])
        self.taps = tuple(blocks for _, blocks in cfg.fusion_stages)

    def forward(self, maps: torch.Tensor) -> list[torch.Tensor]:
        """The outputs after the block counts named in ``fusion_stages``, in stage order."""
        x = self.stem(maps)
        outputs = []
        for index, block in enumerate(self.blocks, start=1):
            if index > self.taps[-1]:
                break
            x = block(x)
            if index in self.taps:
                outputs.append(x)
        return outputs


class AdaptiveFeatureFusion(nn.Module):
    """AFFM (eqs. 4-6): channel-attended concat of Transformer and CNN maps, 3x3 conv, tokens, times beta.

    The paper's Transformer and CNN features have the same channel count; here the tokens (D
    channels) are first reshaped to maps and projected to the CNN width C by a 1x1 conv, so the
    concat has 2C channels as in eq. 4, and the fused C-channel map is projected back to D.
    """

    def __init__(self, embed_dim: int, cnn_channels: int) -> None:
        super().__init__()
        both = 2 * cnn_channels
        self.token_proj = nn.Conv2d(embed_dim, cnn_channels, 1)
        self.channel_weights = nn.Linear(both, both)  # W_1 of eq. 5
        self.fuse = nn.Conv2d(both, cnn_channels, 3, padding=1)
        self.out_proj = nn.Linear(cnn_channels, embed_dim)
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, tokens: torch.Tensor, cnn_maps: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """The term ``beta * F^M`` to add to the next Transformer layer's input."""
        both = torch.cat((self.token_proj(tokens_to_maps(tokens, grid)), cnn_maps), dim=1)
        attention = torch.sigmoid(self.channel_weights(both.mean(dim=(2, 3))))
        fused = self.fuse(both * attention[:, :, None, None])
        return self.beta * self.out_proj(maps_to_tokens(fused, grid[0]))


class StarPoseSR(nn.Module):
    """STAR-Pose SR: ``[B, T, 3, h, w]`` in [0, 1] -> ``[B, 3, 256, 192]`` (target frame, not clamped)."""

    def __init__(self, config: StarPoseConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        self.grid = cfg.token_grid
        self.shallow = nn.Conv2d(3, cfg.channels, 3, padding=1)
        self.embed = PatchEmbed3D(cfg.channels, cfg.patch_size, cfg.embed_dim)
        self.pos_encoding = PositionalEncoding3D(cfg.pos_dim, cfg.embed_dim)
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim)
        if cfg.use_cnn_branch:
            self.cnn_branch = CNNBranch(cfg)
            self.fusions = nn.ModuleList(AdaptiveFeatureFusion(cfg.embed_dim, cfg.cnn_channels)
                                         for _ in cfg.fusion_stages)
        else:
            self.cnn_branch = None
            self.fusions = nn.ModuleList()
        self.fusion_after = {layers: stage for stage, (layers, _) in enumerate(cfg.fusion_stages)}
        self.unembed = PatchUnembed(cfg.channels, cfg.patch_size, cfg.embed_dim)
        self.reconstruct = nn.Sequential(
            nn.Conv2d(cfg.channels, cfg.channels, 3, padding=1), nn.SiLU(),
            nn.Conv2d(cfg.channels, 3 * cfg.scale ** 2, 3, padding=1), nn.PixelShuffle(cfg.scale))
        self.skip = BicubicUpsample(cfg.scale)

    def check_input(self, frames: torch.Tensor) -> None:
        """Raise ValueError naming the expected shape when ``frames`` does not fit the config."""
        cfg = self.config
        expected = (cfg.window, 3, *cfg.lr_size)
        if frames.dim() != 5 or tuple(frames.shape[1:]) != expected:
            dims = ', '.join(map(str, expected))
            raise ValueError(f'StarPoseSR ({cfg.name}, scale {cfg.scale}): input must be [B, {dims}] (B, T, 3, h, w), '
                             f'got {list(frames.shape)}')

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Super-resolve the config's target frame of each window."""
        self.check_input(frames)
        cfg = self.config
        b, t = frames.shape[:2]
        features = self.shallow(frames.flatten(0, 1)).unflatten(0, (b, t))
        token_maps = self.embed(features)
        tokens = maps_to_tokens(token_maps, self.grid[0])
        x = tokens + self.pos_encoding(self.grid, frames.device).to(tokens.dtype)
        cnn_maps = self.cnn_branch(token_maps) if self.cnn_branch is not None else []
        for index, layer in enumerate(self.layers, start=1):
            x = layer(x, self.grid)
            stage = self.fusion_after.get(index)
            if stage is not None and cnn_maps:
                x = x + self.fusions[stage](x, cnn_maps[stage], self.grid)
        x = self.norm(x)

        target = cfg.target_index
        slice_tokens = self.grid[1] * self.grid[2]
        token_frame = target // cfg.patch_size[0]
        target_tokens = x[:, token_frame * slice_tokens:(token_frame + 1) * slice_tokens]
        target_features = self.unembed(target_tokens, self.grid[1:], target % cfg.patch_size[0])
        sr = self.reconstruct(target_features + features[:, target])
        return sr + self.skip(frames[:, target])
