"""A narrow DenseNet-style network, freshly initialised: every BatchNorm of one width has the same scale (ones),
bias, mean and variance, so the dynamo exporter merges them into one initializer each (what ``onnxprune.ir.untie``
undoes). Used by the untie tests and the torch round trip of untied copies."""

from __future__ import annotations

import torch
from torch import nn


class DenseLayer(nn.Module):
    """Pre-activation bottleneck (BN, ReLU, 1x1 conv, BN, ReLU, 3x3 conv) whose output is concatenated to its
    input."""

    def __init__(self, channels: int, growth: int):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, 2 * growth, 1, bias=False),
                                  nn.BatchNorm2d(2 * growth), nn.ReLU(), nn.Conv2d(2 * growth, growth, 3, padding=1,
                                                                                    bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[x, body(x)] along channels."""
        return torch.cat([x, self.body(x)], 1)


class NarrowDenseNet(nn.Module):
    """DenseNet-style (pre-activation BN after Concat, transition, final BN), 8-wide growth, two blocks of two
    layers, a 10-way classifier."""

    def __init__(self, growth: int = 8):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
        channels = 16
        for _ in range(2):
            layers.append(DenseLayer(channels, growth))
            channels += growth
        layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, 16, 1, bias=False), nn.AvgPool2d(2)]
        channels = 16
        for _ in range(2):
            layers.append(DenseLayer(channels, growth))
            channels += growth
        layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, 10]."""
        return self.net(x)


def fresh_narrow_densenet() -> NarrowDenseNet:
    """``NarrowDenseNet`` as initialised (seed 0), in eval mode: BN scale 1, bias 0, mean 0, variance 1."""
    torch.manual_seed(0)
    return NarrowDenseNet().eval()


class SharedLayerMLP(nn.Module):
    """ALBERT-style: one layer module (Linear, ReLU, Linear) applied twice with a residual, so its weights are one
    parameter read twice (a real tie)."""

    def __init__(self, width: int = 16, hidden: int = 32):
        super().__init__()
        self.inp = nn.Linear(8, width)
        self.layer = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, width))
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, 4]."""
        h = self.inp(x)
        for _ in range(2):
            h = h + self.layer(h)
        return self.head(h)
