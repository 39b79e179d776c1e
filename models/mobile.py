"""Narrow mobile CNNs: MobileNetV2, MobileNetV3 (SE + Hardswish), ShuffleNetV2 (split, concat, shuffle)."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_act(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
                act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------------------------- MobileNetV2
class InvertedResidual(nn.Module):
    """1x1 expand (skipped when expand == 1) -> depthwise 3x3 -> 1x1 linear project.

    Residual when stride is 1 and cin == cout."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_act(cin, hidden, 1, act=nn.ReLU6))
        layers += [conv_bn_act(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   conv_bn_act(hidden, cout, 1, act=None)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_act(3, 16, 3, 2, act=nn.ReLU6),      # 16x16
            InvertedResidual(16, 8, 1, 1),                # no expansion conv
            InvertedResidual(8, 16, 2, 4),                # 8x8, hidden 32
            InvertedResidual(16, 16, 1, 2),               # residual, hidden 32
            InvertedResidual(16, 24, 2, 2),               # 4x4, hidden 32
            InvertedResidual(24, 24, 1, 1),               # residual, no expansion conv
            conv_bn_act(24, 32, 1, act=nn.ReLU6),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# ----------------------------------------------------------------------------------------------- MobileNetV3
class SqueezeExcitation(nn.Module):
    """Global avg pool -> 1x1 conv -> ReLU -> 1x1 conv -> Hardsigmoid -> multiply."""

    def __init__(self, c: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.scale_act = nn.Hardsigmoid()

    def forward(self, x):
        s = self.scale_act(self.fc2(self.relu(self.fc1(self.avgpool(x)))))
        return s * x


class MBv3Block(nn.Module):
    def __init__(self, cin: int, exp: int, cout: int, k: int, se: bool, act: type[nn.Module], stride: int):
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(conv_bn_act(cin, exp, 1, act=act))
        layers.append(conv_bn_act(exp, exp, k, stride, groups=exp, act=act))
        if se:
            layers.append(SqueezeExcitation(exp, max(8, exp // 4)))
        layers.append(conv_bn_act(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return y + x if self.use_res else y


class MobileNetV3(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        HS, RE = nn.Hardswish, nn.ReLU
        self.features = nn.Sequential(
            conv_bn_act(3, 16, 3, 2, act=HS),             # 16x16
            MBv3Block(16, 16, 16, 3, True, RE, 2),        # 8x8, dw + SE + project, no expand
            MBv3Block(16, 32, 24, 3, False, RE, 2),       # 4x4
            MBv3Block(24, 32, 24, 3, False, RE, 1),       # residual
            MBv3Block(24, 48, 32, 5, True, HS, 2),        # 2x2
            MBv3Block(32, 48, 32, 5, True, HS, 1),        # residual with SE
            conv_bn_act(32, 48, 1, act=HS),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(48, 64), nn.Hardswish(inplace=True), nn.Dropout(0.2),
                                        nn.Linear(64, num_classes))

    def forward(self, x):
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


# ----------------------------------------------------------------------------------------------- ShuffleNetV2
def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = x.transpose(1, 2).contiguous()
    return x.view(b, c, h, w)


class ShuffleUnit(nn.Module):
    """stride 1: split channels in half, transform one half, concat, shuffle.
    stride 2: two branches (dw-s2 + 1x1 | 1x1 + dw-s2 + 1x1) on the full input, concat, shuffle."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride == 1:
            assert cin == cout
            self.branch1 = None
        else:
            self.branch1 = nn.Sequential(conv_bn_act(cin, cin, 3, stride, groups=cin, act=None),
                                         conv_bn_act(cin, half, 1))
        c2 = cin if stride > 1 else half
        self.branch2 = nn.Sequential(conv_bn_act(c2, half, 1),
                                     conv_bn_act(half, half, 3, stride, groups=half, act=None),
                                     conv_bn_act(half, half, 1))

    def forward(self, x):
        if self.branch1 is None:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = conv_bn_act(3, 16, 3, 1)
        self.maxpool = nn.MaxPool2d(3, 2, 1)                                     # 16x16
        self.stage2 = nn.Sequential(ShuffleUnit(16, 32, 2), ShuffleUnit(32, 32, 1), ShuffleUnit(32, 32, 1))
        self.stage3 = nn.Sequential(ShuffleUnit(32, 32, 2), ShuffleUnit(32, 32, 1))  # 4x4
        self.conv5 = conv_bn_act(32, 48, 1)
        self.fc = nn.Linear(48, num_classes)

    def forward(self, x):
        x = self.stage3(self.stage2(self.maxpool(self.conv1(x))))
        x = self.conv5(x).mean([2, 3])       # global pool as torchvision does it (ReduceMean)
        return self.fc(x)
