"""Narrow YOLOv8- and YOLO11-style detectors, written after ultralytics' modules (no ultralytics needed).

Backbone and neck: Conv (Conv2d + BN + SiLU), C2f (YOLOv8) or C3k2 (YOLO11: C2f whose blocks are C3k), SPPF,
C2PSA (YOLO11: a position-sensitive attention block), upsample + concat (FPN/PAN). Head (``Detect``): per level a
box branch cv2 (4 x reg_max distribution bins) and a class branch cv3; the Distribution Focal Loss decoder (DFL)
reads each box side's 16 bins through a softmax and a fixed 1x1 conv with weights 0..15 (the expected bin), then
anchors and strides built from the feature map sizes at run time (dynamic H/W) turn distances into boxes.
Output: [B, 4 + classes, anchors] (boxes in pixels, then class scores), as ultralytics exports it.
"""

from __future__ import annotations

import torch
from torch import nn

REG_MAX = 16
NUM_CLASSES = 3


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm + SiLU."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """x + cv2(cv1(x)) (3x3, 3x3) when shortcut and sizes agree."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, e: float = 1.0):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1, self.cv2 = Conv(c1, c_, 3), Conv(c_, c2, 3)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3k(nn.Module):
    """CSP block: cv3(cat(m(cv1(x)), cv2(x))) with n bottlenecks in m."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True):
        super().__init__()
        c_ = c2 // 2
        self.cv1, self.cv2, self.cv3 = Conv(c1, c_), Conv(c1, c_), Conv(2 * c_, c2)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C2f(nn.Module):
    """cv1 -> chunk(2) -> n blocks, each fed the last output -> cat of all -> cv2 (C3k2 when c3k: blocks are C3k)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, c3k: bool = False):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c)
        self.cv2 = Conv((2 + n) * self.c, c2)
        self.m = nn.ModuleList(C3k(self.c, self.c, 1, shortcut) if c3k else Bottleneck(self.c, self.c, shortcut)
                               for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """cv1 -> three chained 5x5 max pools -> cat of the four -> cv2."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        c_ = c1 // 2
        self.cv1, self.cv2 = Conv(c1, c_), Conv(c_ * 4, c2)
        self.m = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class Attention(nn.Module):
    """ultralytics' Attention: qkv 1x1 conv, per head (key_dim, key_dim, head_dim) split, softmax over positions,
    plus a depthwise 3x3 positional encoding of v, then a 1x1 projection."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.key_dim = self.head_dim // 2
        self.scale = self.key_dim ** -0.5
        self.qkv = Conv(dim, dim + self.key_dim * num_heads * 2, act=False)
        self.proj = Conv(dim, dim, act=False)
        self.pe = Conv(dim, dim, 3, g=dim, act=False)

    def forward(self, x):
        b, c, h, w = x.shape
        n = h * w
        qkv = self.qkv(x)
        q, k, v = qkv.view(b, self.num_heads, self.key_dim * 2 + self.head_dim, n).split(
            [self.key_dim, self.key_dim, self.head_dim], dim=2)
        attn = ((q.transpose(-2, -1) @ k) * self.scale).softmax(dim=-1)
        x = (v @ attn.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
        return self.proj(x)


class C2PSA(nn.Module):
    """cv1 -> split (a, b) -> b += attn(b); b += ffn(b) -> cv2(cat(a, b))."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.c = c1 // 2
        self.cv1, self.cv2 = Conv(c1, 2 * self.c), Conv(2 * self.c, c1)
        self.attn = Attention(self.c, num_heads=max(1, self.c // 8))
        self.ffn = nn.Sequential(Conv(self.c, self.c * 2), Conv(self.c * 2, self.c, act=False))

    def forward(self, x):
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        b = b + self.attn(b)
        b = b + self.ffn(b)
        return self.cv2(torch.cat((a, b), 1))


class DFL(nn.Module):
    """Expected bin of each box side's distribution: softmax over 16 bins, then a fixed 1x1 conv with weights
    0..15 (ultralytics' DFL, requires_grad False)."""

    def __init__(self, c1: int = REG_MAX):
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1)
        self.c1 = c1

    def forward(self, x):
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


def _make_anchors(feats: list[torch.Tensor], strides: tuple[int, ...]):
    points, stride_tensor = [], []
    for f, stride in zip(feats, strides):
        h, w = f.shape[2:]
        sx = torch.arange(w, dtype=f.dtype) + 0.5
        sy = torch.arange(h, dtype=f.dtype) + 0.5
        yy, xx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((xx, yy), -1).view(-1, 2))
        stride_tensor.append(torch.full((h * w, 1), float(stride), dtype=f.dtype))
    return torch.cat(points).transpose(0, 1), torch.cat(stride_tensor).transpose(0, 1)


class Detect(nn.Module):
    """Per level: cv2 (Conv 3x3, Conv 3x3, 1x1 to 4 x REG_MAX) and cv3 (Conv 3x3, Conv 3x3, 1x1 to classes);
    DFL + anchors decode the boxes (xywh), classes go through a sigmoid."""

    def __init__(self, channels: tuple[int, ...], strides: tuple[int, ...], nc: int = NUM_CLASSES):
        super().__init__()
        c2, c3 = max(16, channels[0] // 4, REG_MAX * 4), max(channels[0], min(nc, 100))
        self.nc, self.strides = nc, strides
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * REG_MAX, 1))
                                 for x in channels)
        self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1))
                                 for x in channels)
        self.dfl = DFL()

    def forward(self, feats):
        b = feats[0].shape[0]
        outs = [torch.cat((cv2(f), cv3(f)), 1) for f, cv2, cv3 in zip(feats, self.cv2, self.cv3)]
        x = torch.cat([o.view(b, 4 * REG_MAX + self.nc, -1) for o in outs], 2)
        box, cls = x.split((4 * REG_MAX, self.nc), 1)
        anchors, strides = _make_anchors(feats, self.strides)
        lt, rb = self.dfl(box).chunk(2, 1)
        x1y1, x2y2 = anchors.unsqueeze(0) - lt, anchors.unsqueeze(0) + rb
        boxes = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides
        return torch.cat((boxes, cls.sigmoid()), 1)


class YOLO(nn.Module):
    """Stem (two stride-2 Convs), three stride-2 stages with C2f/C3k2, SPPF (+ C2PSA for YOLO11), an FPN/PAN neck
    (upsample, concat, C2f/C3k2; downsample, concat), and the Detect head on strides 8, 16, 32."""

    def __init__(self, version: int = 8, w: int = 8):
        super().__init__()
        c3k = version == 11

        def block(c1, c2, shortcut=True):
            return C2f(c1, c2, 1, shortcut, c3k)

        self.stem = nn.Sequential(Conv(3, w, 3, 2), Conv(w, 2 * w, 3, 2), block(2 * w, 2 * w))
        self.p3 = nn.Sequential(Conv(2 * w, 4 * w, 3, 2), block(4 * w, 4 * w))
        self.p4 = nn.Sequential(Conv(4 * w, 4 * w, 3, 2), block(4 * w, 4 * w))
        tail = [Conv(4 * w, 8 * w, 3, 2), block(8 * w, 8 * w), SPPF(8 * w, 8 * w)]
        self.p5 = nn.Sequential(*tail, *([C2PSA(8 * w, 8 * w)] if c3k else []))
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.n4 = block(12 * w, 4 * w, False)
        self.n3 = block(8 * w, 4 * w, False)
        self.d3 = Conv(4 * w, 4 * w, 3, 2)
        self.n4b = block(8 * w, 4 * w, False)
        self.d4 = Conv(4 * w, 4 * w, 3, 2)
        self.n5 = block(12 * w, 8 * w, False)
        self.detect = Detect((4 * w, 4 * w, 8 * w), (8, 16, 32))

    def features(self, x) -> list:
        """The three neck outputs (strides 8, 16, 32) the Detect head reads."""
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        p5 = self.p5(p4)
        n4 = self.n4(torch.cat((self.up(p5), p4), 1))
        n3 = self.n3(torch.cat((self.up(n4), p3), 1))
        n4b = self.n4b(torch.cat((self.d3(n3), n4), 1))
        n5 = self.n5(torch.cat((self.d4(n4b), p5), 1))
        return [n3, n4b, n5]

    def forward(self, x):
        return self.detect(self.features(x))


def yolov8() -> YOLO:
    """YOLOv8n layout at width 8 (C2f)."""
    return YOLO(8)


def yolo11() -> YOLO:
    """YOLO11n layout at width 8 (C3k2, C2PSA)."""
    return YOLO(11)


def images(batch: int = 2, size: int = 64) -> tuple[torch.Tensor]:
    """Images [B, 3, size, size] (deterministic); size a multiple of 32."""
    return (torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch * 1000 + size)),)
