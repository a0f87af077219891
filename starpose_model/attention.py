"""Linear attention of STAR-Pose: the SCLeakyReLU kernel (eq. 3) and multi-scale token groups.

Attention is computed in the associative order of eq. 2: ``phi(K)^T [V, 1]`` first (a D x (D+1)
matrix per head that also holds the normaliser), then ``phi(Q)`` times it, so the cost is
O(N D^2) and no N x N matrix is ever built. The kernel, that product and the division run in
float32 even under autocast: half precision overflows the sums over N tokens (EfficientViT and
timm both had NaN reports there).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


class SCLeakyReLU(nn.Module):
    """Shifted and clipped LeakyReLU (eq. 3): x+1 for x>0, a*x+1 down to x=-1/a, 0 below.

    Written as ``relu(x) + clamp(a*x + 1, 0, 1)`` (x > 0: x + 1; -1/a <= x <= 0: a*x + 1; below:
    0): eq. 3 for any a > 0, without dividing by the learnable slope ``a`` (initialised to 0.01)
    and without a select op (ONNX Runtime's ``Where`` was the slowest node of the tiny model on CPU).
    """

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise phi(x), same shape and dtype."""
        alpha = self.alpha.to(x.dtype)
        return torch.relu(x) + torch.clamp(alpha * x + 1, min=0, max=1)


def build_kernel(name: str) -> nn.Module:
    """The feature map phi: ``scleaky`` (the paper's) or ``relu`` (the Table 4 ablation)."""
    if name == 'scleaky':
        return SCLeakyReLU()
    if name == 'relu':
        return nn.ReLU()
    raise ValueError(f"attention kernel must be 'scleaky' or 'relu', got {name!r}")


def _float32_region(device_type: str):
    """Turn autocast off inside (only when it is on, so export tracing sees no autocast nodes)."""
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: nn.Module,
                     eps: float = 1e-5) -> torch.Tensor:
    """Eq. 2 with Sim(Q, K) = phi(Q) phi(K)^T, in associative order; ``[..., N, d]`` in and out.

    V is padded with a column of ones so that one product yields both ``sum_j phi(K_j)^T V_j`` and
    the normaliser ``sum_j phi(K_j)^T`` (EfficientViT's trick); ``eps`` keeps the division finite
    when every similarity of a query is zero (possible with ReLU or clipped SCLeakyReLU).
    """
    out_dtype = v.dtype
    with _float32_region(q.device.type):
        q = kernel(q.float())
        k = kernel(k.float())
        v = F.pad(v.float(), (0, 1), value=1.0)
        kv = k.transpose(-1, -2) @ v
        out = q @ kv
        out = out[..., :-1] / (out[..., -1:] + eps)
    return out.to(out_dtype)


def tokens_to_maps(tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """``[B, T'*H'*W', C]`` tokens (ordered t, h, w) -> ``[B*T', C, H', W']`` per-frame maps."""
    b, _, c = tokens.shape
    t, h, w = grid
    return tokens.reshape(b * t, h, w, c).permute(0, 3, 1, 2)


def maps_to_tokens(maps: torch.Tensor, frames: int) -> torch.Tensor:
    """Inverse of ``tokens_to_maps``: ``[B*T', C, H', W']`` -> ``[B, T'*H'*W', C]``."""
    bt, c, h, w = maps.shape
    return maps.permute(0, 2, 3, 1).reshape(bt // frames, frames * h * w, c)


class MultiScaleLinearAttention(nn.Module):
    """Linear attention over the original Q/K/V tokens plus depthwise-aggregated groups.

    As in EfficientViT's LiteMLA, each aggregation is a kxk depthwise conv over the token grid
    (per frame) followed by a grouped 1x1 conv that mixes within each head's q, k or v; every
    scale adds ``heads`` extra heads, and one projection maps all heads back to ``dim``.
    """

    def __init__(self, dim: int, heads: int, kernel: str = 'scleaky', aggregation_kernels: tuple[int, ...] = (3, 5),
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.eps = eps
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.aggregations = nn.ModuleList(
            nn.Sequential(nn.Conv2d(3 * dim, 3 * dim, k, padding=k // 2, groups=3 * dim, bias=False),
                          nn.Conv2d(3 * dim, 3 * dim, 1, groups=3 * heads, bias=False))
            for k in aggregation_kernels)
        self.kernel = build_kernel(kernel)
        self.proj = nn.Linear(dim * (1 + len(aggregation_kernels)), dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``x``: ``[B, N, dim]`` tokens on the ``grid`` (T', H', W'); returns the same shape."""
        b, n, _ = x.shape
        qkv = self.qkv(x)
        groups = [qkv]
        if self.aggregations:
            maps = tokens_to_maps(qkv, grid)
            groups += [maps_to_tokens(aggregate(maps), grid[0]) for aggregate in self.aggregations]
        # [B, N, scales*3*dim] -> [B, N, scales, 3, heads, d] -> 3 x [B, scales*heads, N, d]
        stacked = torch.stack(groups, dim=2).reshape(b, n, len(groups), 3, self.heads, self.head_dim)
        q, k, v = stacked.permute(3, 0, 2, 4, 1, 5).reshape(3, b, len(groups) * self.heads, n, self.head_dim)
        out = linear_attention(q, k, v, self.kernel, self.eps)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))
