"""Tiny CNNs exercising normalisations/activations other than BatchNorm + ReLU."""

from __future__ import annotations

import torch
from torch import nn


class GroupNormNet(nn.Module):
    """conv -> GroupNorm(4, 16) -> ReLU -> conv s2 -> GroupNorm(8, 32) -> SiLU -> pool -> Linear."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1)
        self.gn1 = nn.GroupNorm(4, 16)
        self.conv2 = nn.Conv2d(16, 32, 3, 2, 1)
        self.gn2 = nn.GroupNorm(8, 32)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = torch.relu(self.gn1(self.conv1(x)))
        x = nn.functional.silu(self.gn2(self.conv2(x)))
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class InstanceNormNet(nn.Module):
    """conv -> InstanceNorm2d(affine) -> PReLU(16) -> conv -> InstanceNorm2d(no affine) -> LeakyReLU -> Linear."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1)
        self.in1 = nn.InstanceNorm2d(16, affine=True)
        self.prelu = nn.PReLU(num_parameters=16)
        self.conv2 = nn.Conv2d(16, 24, 3, 2, 1)
        self.in2 = nn.InstanceNorm2d(24, affine=False)
        self.lrelu = nn.LeakyReLU(0.1)
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x):
        x = self.prelu(self.in1(self.conv1(x)))
        x = self.lrelu(self.in2(self.conv2(x)))
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))
