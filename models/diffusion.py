"""A narrow diffusion UNet in the layout of diffusers' UNet2DModel (no diffusers needed).

Sinusoidal timestep embedding -> Linear -> SiLU -> Linear; ResnetBlock2D (GroupNorm, SiLU, 3x3 conv, the time
embedding projected and broadcast-added over H/W, GroupNorm, SiLU, 3x3 conv, 1x1 shortcut when widths differ);
a strided-conv downsample; a mid block with a self-attention block (GroupNorm, q/k/v Linear over H*W tokens, 2
heads, output projection, residual); up blocks that concatenate the skip connections, nearest upsample + conv;
GroupNorm, SiLU, conv out. Inputs: ``sample`` [B, 3, 16, 16] and ``timestep`` [B] (float).
"""

from __future__ import annotations

import math

import torch
from torch import nn

GROUPS = 4


def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResnetBlock(nn.Module):
    """norm1 -> SiLU -> conv1 -> + proj(temb) -> norm2 -> SiLU -> conv2, + shortcut."""

    def __init__(self, cin: int, cout: int, temb: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(GROUPS, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.time_emb_proj(nn.functional.silu(temb))[:, :, None, None]
        h = self.conv2(nn.functional.silu(self.norm2(h)))
        return self.shortcut(x) + h


class AttentionBlock(nn.Module):
    """diffusers' Attention on a feature map: GroupNorm, tokens [B, HW, C], multi-head attention, residual."""

    def __init__(self, channels: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.group_norm = nn.GroupNorm(GROUPS, channels)
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels) for _ in range(3))
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x):
        b, c, h, w = x.shape
        t = self.group_norm(x).view(b, c, h * w).transpose(1, 2)
        q, k, v = (p(t).view(b, -1, self.heads, c // self.heads).transpose(1, 2)
                   for p in (self.to_q, self.to_k, self.to_v))
        a = nn.functional.scaled_dot_product_attention(q, k, v)
        a = self.to_out(a.transpose(1, 2).reshape(b, -1, c))
        return x + a.transpose(1, 2).reshape(b, c, h, w)


class UNet2D(nn.Module):
    """Widths (16, 32); down: [res 16, down], [res 32]; mid: res, attention, res; up: [res on cat, up], [res on
    cat]; out. Predicts noise of the input's shape."""

    def __init__(self, widths: tuple[int, int] = (16, 32), temb: int = 32):
        super().__init__()
        w0, w1 = widths
        self.temb_dim = w0
        self.time_embedding = nn.Sequential(nn.Linear(w0, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(3, w0, 3, padding=1)
        self.down0 = ResnetBlock(w0, w0, temb)
        self.downsample = nn.Conv2d(w0, w0, 3, stride=2, padding=1)
        self.down1 = ResnetBlock(w0, w1, temb)
        self.mid0 = ResnetBlock(w1, w1, temb)
        self.mid_attn = AttentionBlock(w1)
        self.mid1 = ResnetBlock(w1, w1, temb)
        self.up1 = ResnetBlock(w1 + w1, w1, temb)
        self.upsample = nn.Conv2d(w1, w1, 3, padding=1)
        self.up0 = ResnetBlock(w1 + w0, w0, temb)
        self.norm_out = nn.GroupNorm(GROUPS, w0)
        self.conv_out = nn.Conv2d(w0, 3, 3, padding=1)

    def forward(self, sample, timestep):
        temb = self.time_embedding(_timestep_embedding(timestep, self.temb_dim))
        x0 = self.conv_in(sample)
        s0 = self.down0(x0, temb)
        s1 = self.down1(self.downsample(s0), temb)
        m = self.mid1(self.mid_attn(self.mid0(s1, temb)), temb)
        u = self.up1(torch.cat([m, s1], 1), temb)
        u = self.upsample(nn.functional.interpolate(u, scale_factor=2.0, mode="nearest"))
        u = self.up0(torch.cat([u, s0], 1), temb)
        return self.conv_out(nn.functional.silu(self.norm_out(u)))


def inputs(batch: int = 2, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A noisy sample [B, 3, size, size] and timesteps [B] (deterministic)."""
    g = torch.Generator().manual_seed(batch * 100 + size)
    return torch.randn(batch, 3, size, size, generator=g), torch.rand(batch, generator=g) * 1000
