"""Architectures as published, for issue 8 ("real exported models as they come"): ShuffleNetV2 1.0x written as
torchvision writes it (stem 24, stages 116/232/464 with [4, 8, 4] units, conv5 1024, ``channel_shuffle`` through
``view(batch, -1, h, w)``), and an encoder of ``nn.TransformerEncoderLayer`` (``nn.MultiheadAttention`` with its
packed in-projection), batch-first or sequence-first.

Weights are random; inputs are small (ShuffleNetV2 on 3x64x64, the encoder on 12 tokens) so exports stay fast.
"""

from __future__ import annotations

import torch
from torch import nn

SHUFFLENET_STAGES = (4, 8, 4)
SHUFFLENET_WIDTHS = (24, 116, 232, 464, 1024)  # 1.0x: stem, three stages, conv5


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's shuffle: [B, g, C/g, H, W] -> transpose -> [B, -1, H, W]."""
    batch, channels, height, width = x.size()
    x = x.view(batch, groups, channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batch, -1, height, width)


def _depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, bias=False, groups=channels)


class InvertedResidual(nn.Module):
    """torchvision's ShuffleNetV2 unit: stride 1 splits the input in halves (``chunk``), transforms one; stride 2
    runs two branches on the whole input; both concatenate and shuffle."""

    def __init__(self, inp: int, oup: int, stride: int):
        super().__init__()
        self.stride = stride
        branch = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(_depthwise(inp, stride), nn.BatchNorm2d(inp),
                                         nn.Conv2d(inp, branch, 1, bias=False), nn.BatchNorm2d(branch),
                                         nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else branch, branch, 1, bias=False), nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True), _depthwise(branch, stride), nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 (torchvision ``shufflenet_v2_x1_0`` layout) with ``num_classes`` outputs."""

    def __init__(self, stages: tuple[int, ...] = SHUFFLENET_STAGES, widths: tuple[int, ...] = SHUFFLENET_WIDTHS,
                 num_classes: int = 1000):
        super().__init__()
        inp = widths[0]
        self.conv1 = nn.Sequential(nn.Conv2d(3, inp, 3, 2, 1, bias=False), nn.BatchNorm2d(inp), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for k, (repeats, oup) in enumerate(zip(stages, widths[1:-1]), start=2):
            units = [InvertedResidual(inp, oup, 2)] + [InvertedResidual(oup, oup, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{k}", nn.Sequential(*units))
            inp = oup
        self.conv5 = nn.Sequential(nn.Conv2d(inp, widths[-1], 1, bias=False), nn.BatchNorm2d(widths[-1]),
                                   nn.ReLU(inplace=True))
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = self.conv5(x).mean([2, 3])
        return self.fc(x)


class TransformerEncoderClassifier(nn.Module):
    """Embedding -> ``nn.TransformerEncoder`` of ``nn.TransformerEncoderLayer`` (post-LN, ReLU MLP, packed
    in-projection) -> mean over tokens -> Linear. ``batch_first`` picks the token layout [B, T] or [T, B]."""

    def __init__(self, batch_first: bool = True, d_model: int = 32, heads: int = 4, mlp: int = 64, layers: int = 2,
                 vocab: int = 100, num_classes: int = 10):
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Embedding(vocab, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, mlp, dropout=0.0, batch_first=batch_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(tokens))
        return self.head(h.mean(1 if self.batch_first else 0))
