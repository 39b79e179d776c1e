"""Narrow classic CNNs: ResNet (basic / bottleneck / deep), VGG-BN, ResNeXt, DenseNet, Inception, UNet.

Every model is deliberately tiny (widths 8-32, a block or two per stage) so that export and an
onnxruntime run take milliseconds; the *structure* (downsample shortcuts, concatenations, grouped
convs, flatten before the classifier, transposed convs, ...) is what the pruning tests exercise.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


# ----------------------------------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck (1x1 reduce, 3x3, 1x1 expand); ``groups > 1`` makes it a ResNeXt block."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, stages: list[nn.Module], cstem: int, cout: int, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, cstem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cstem)
        self.relu = nn.ReLU(inplace=True)
        self.layers = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cout, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet_basic(num_classes: int = 10) -> ResNet:
    """ResNet-18-like: stages of one basic block at widths 8, 16, 32 (strides 1, 2, 2)."""
    blocks = [BasicBlock(8, 8, 1), BasicBlock(8, 16, 2), BasicBlock(16, 32, 2)]
    return ResNet(blocks, 8, 32, num_classes)


def resnet_bottleneck(num_classes: int = 10) -> ResNet:
    """ResNet-50-like: bottleneck stages [2, 1, 1, 1], bottleneck width 8, block output 32 (expansion 4)."""
    blocks = [
        Bottleneck(16, 8, 32, 1), Bottleneck(32, 8, 32, 1),  # stage 1: downsample only for the width change
        Bottleneck(32, 8, 32, 2),
        Bottleneck(32, 8, 32, 2),
        Bottleneck(32, 8, 32, 2),
    ]
    return ResNet(blocks, 16, 32, num_classes)


def resnet_deep(num_blocks: int, width: int = 16, num_classes: int = 10) -> ResNet:
    """Plain deep ResNet: ``num_blocks`` identity basic blocks at one width in one stage (scaling benchmark)."""
    return ResNet([BasicBlock(width, width, 1) for _ in range(num_blocks)], width, width, num_classes)


def resnext(num_classes: int = 10) -> ResNet:
    """ResNeXt-like: bottlenecks whose 3x3 conv has groups=4 (4 or 8 channels per group)."""
    blocks = [
        Bottleneck(16, 16, 32, 1, groups=4),
        Bottleneck(32, 16, 32, 1, groups=4),
        Bottleneck(32, 32, 32, 2, groups=4),
    ]
    return ResNet(blocks, 16, 32, num_classes)


# ----------------------------------------------------------------------------------------------- VGG
class VGG(nn.Module):
    """VGG-BN: conv/BN/ReLU stack with max pools, ``torch.flatten`` of a 16x4x4 map, two Linear layers."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_relu(3, 8), *conv_bn_relu(8, 8), nn.MaxPool2d(2),     # 16x16
            *conv_bn_relu(8, 16), nn.MaxPool2d(2),                          # 8x8
            *conv_bn_relu(16, 16), nn.MaxPool2d(2),                         # 4x4
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 4 * 4, 32), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(32, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# ----------------------------------------------------------------------------------------------- DenseNet
class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int = 2):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x):
        new = self.conv1(self.relu(self.norm1(x)))
        new = self.conv2(self.relu(self.norm2(new)))
        return torch.cat([x, new], 1)


class Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.AvgPool2d(2, 2))


class DenseNet(nn.Module):
    """DenseNet: stem 16, block of 3 layers (growth 8) -> 40, transition -> 20, block of 2 layers -> 36."""

    def __init__(self, growth: int = 8, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)]
        c = 16
        for _ in range(3):
            layers.append(DenseLayer(c, growth))
            c += growth
        layers.append(Transition(c, c // 2))
        c //= 2
        for _ in range(2):
            layers.append(DenseLayer(c, growth))
            c += growth
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# ----------------------------------------------------------------------------------------------- Inception
class InceptionBlock(nn.Module):
    """Four branches concatenated: 1x1 | 1x1-3x3 | 1x1-5x5 (or 1x1-3x3-3x3) | maxpool-1x1."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, cpool: int, double3x3: bool):
        super().__init__()
        self.b1 = conv_bn_relu(cin, c1, 1)
        self.b2 = nn.Sequential(conv_bn_relu(cin, c3r, 1), conv_bn_relu(c3r, c3, 3))
        if double3x3:
            self.b3 = nn.Sequential(conv_bn_relu(cin, c5r, 1), conv_bn_relu(c5r, c5, 3), conv_bn_relu(c5, c5, 3))
        else:
            self.b3 = nn.Sequential(conv_bn_relu(cin, c5r, 1), conv_bn_relu(c5r, c5, 5))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn_relu(cin, cpool, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class Inception(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = conv_bn_relu(3, 16, 3, 2)                                  # 16x16
        self.inc1 = InceptionBlock(16, 8, 8, 8, 4, 8, 8, double3x3=True)       # -> 32
        self.pool = nn.MaxPool2d(2)                                            # 8x8
        self.inc2 = InceptionBlock(32, 8, 8, 16, 4, 8, 8, double3x3=False)     # -> 40
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(40, num_classes)

    def forward(self, x):
        x = self.inc2(self.pool(self.inc1(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ----------------------------------------------------------------------------------------------- UNet
def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))


class UNet(nn.Module):
    """Two-level UNet: 8 -> 16 -> 32 encoder, ConvTranspose2d(k=2, s=2) up + skip concat, 1x1 head (2 classes)."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.enc1 = double_conv(3, 8)
        self.enc2 = double_conv(8, 16)
        self.bottom = double_conv(16, 32)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec2 = double_conv(32, 16)
        self.up1 = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec1 = double_conv(16, 8)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottom(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


class ResNet50Like(nn.Module):
    """torchvision.models.resnet50's shape (stride on the 3x3 conv, 1x1 downsample shortcuts), random weights."""

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], 64
        for stage, count in enumerate(layers):
            mid = 64 * 2**stage
            for k in range(count):
                blocks.append(Bottleneck(cin, mid, mid * 4, 2 if (k == 0 and stage > 0) else 1))
                cin = mid * 4
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))
