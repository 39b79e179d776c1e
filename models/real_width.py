"""Classic architectures at their real widths (torchvision's layouts, random weights), for benchmarks only: too big
for the test sweeps. ResNet-50 is ``models.cnn.ResNet50Like``; the others are here.

- ``VGG16``: torchvision's vgg16 (configuration D, no BatchNorm): 13 3x3 convs 64-512, 7x7 adaptive average pool,
  classifier 25088 -> 4096 -> 4096 -> 1000 with ReLU and Dropout; 138.4 M parameters (553 MB in float32).
- ``DenseNet121``: torchvision's densenet121: growth 32, blocks (6, 12, 24, 16), bottleneck width 4 x 32,
  64-channel stem, every dense layer reads ``cat(all earlier features)`` (torchvision's form, so the export holds
  one Concat of a growing list per layer), transitions halve the channels; 8.0 M parameters.
- ``vit_b16``: ViT-B/16 at real sizes on ``models.transformers.ViT`` (width 768, 12 heads of 64, MLP 3072,
  12 pre-LN blocks, 16x16 patches of a 224x224 image, 1000 classes): 86.6 M parameters. Its attention has separate
  q/k/v projections where torchvision's ``nn.MultiheadAttention`` packs them into one [2304, 768] weight; the
  parameter count and widths are the same.
"""

from __future__ import annotations

import torch
from torch import nn

from .transformers import ViT

VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    """torchvision.models.vgg16's layout (no BatchNorm), random weights."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in VGG16_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, item, 3, padding=1), nn.ReLU(inplace=True)]
                cin = item
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class _DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 (4 * growth) - BN-ReLU-Conv3x3 (growth) over the concatenation of every earlier feature."""

    def __init__(self, cin: int, growth: int, bn_size: int):
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(bn_size * growth), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, cin: int, growth: int, bn_size: int):
        super().__init__({f"denselayer{k + 1}": _DenseLayer(cin + k * growth, growth, bn_size)
                          for k in range(layers)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseNet121(nn.Module):
    """torchvision.models.densenet121's layout, random weights."""

    def __init__(self, growth: int = 32, blocks: tuple[int, ...] = (6, 12, 24, 16), stem: int = 64, bn_size: int = 4,
                 num_classes: int = 1000):
        super().__init__()
        modules: list[nn.Module] = [nn.Conv2d(3, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem),
                                    nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        channels = stem
        for k, count in enumerate(blocks):
            modules.append(_DenseBlock(count, channels, growth, bn_size))
            channels += count * growth
            if k != len(blocks) - 1:
                modules += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                            nn.Conv2d(channels, channels // 2, 1, bias=False), nn.AvgPool2d(2, 2)]
                channels //= 2
        modules.append(nn.BatchNorm2d(channels))
        self.features = nn.Sequential(*modules)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(nn.functional.relu(self.features(x)), 1)
        return self.classifier(torch.flatten(x, 1))


def vit_b16(num_classes: int = 1000) -> ViT:
    """ViT-B/16's sizes on ``models.transformers.ViT`` (224x224 images, 196 patches + class token)."""
    return ViT(dim=768, heads=12, mlp=3072, layers=12, patch=16, image=224, num_classes=num_classes, head_dim=64)
