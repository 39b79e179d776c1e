"""A narrow CoAtNet/GCViT-style window attention block with a relative-position bias (issue 9, "No growth").

``RelativePositionBlock``: tokens [B, N, C] of a ``window`` x ``window`` patch grid (N = window²); LayerNorm, one
packed qkv Linear, ``heads`` heads; scores q·kᵀ/√d plus a bias gathered from a learned table
[(2w-1)², heads] by a constant index buffer [N*N] (Swin/CoAtNet's ``relative_position_index``), viewed
[heads, N, N]; softmax, proj, residual; then an MLP with a residual. Exporters write the bias as
``Gather(table, index)`` → Reshape → Transpose: folding that subgraph would write a [heads, N, N] constant several
times larger than the table and the index (on CoAtNet/GCViT: 1x8x196x196 per block), which loading must not do.

Weights are random (seeded); tests compare pruned models with their mask oracle, not accuracies.
"""

from __future__ import annotations

import torch
from torch import nn

from . import ModelSpec

INPUT_NAMES = ("tokens",)


def relative_position_index(window: int) -> torch.Tensor:
    """[window², window²] index into a [(2w-1)², heads] table: entry (i, j) is the relative offset of patch j from
    patch i, as Swin/CoAtNet build it."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


class RelativePositionBlock(nn.Module):
    """x + proj(attn(LN(x)) with relative-position bias), then x + MLP(LN(x)); x is [B, window², dim]."""

    def __init__(self, dim: int = 32, heads: int = 4, window: int = 7, mlp: int = 64):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.5)
        self.register_buffer("position_index", relative_position_index(window).flatten(), persistent=False)
        self.fc1, self.fc2 = nn.Linear(dim, mlp), nn.Linear(mlp, dim)
        self.tokens = window * window

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.table[self.position_index].view(self.tokens, self.tokens, self.heads).permute(2, 0, 1)
        attn = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5 + bias.unsqueeze(0)
        y = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
        x = x + self.proj(y)
        return x + self.fc2(torch.relu(self.fc1(self.norm2(x))))


def _build() -> nn.Module:
    torch.manual_seed(0)
    return RelativePositionBlock().eval()


def inputs(batch: int = 2) -> tuple[torch.Tensor]:
    """Tokens [batch, 49, 32] (deterministic)."""
    return (torch.randn(batch, 49, 32, generator=torch.Generator().manual_seed(batch)),)


SPEC = ModelSpec("relative_position", _build, inputs, INPUT_NAMES, {"tokens": {0: "batch"}, "output": {0: "batch"}},
                 "transformer", description="window attention with a relative-position bias table (CoAtNet/GCViT)")
