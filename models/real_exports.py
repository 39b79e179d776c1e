"""Architectures as published, for issue 8 ("real exported models as they come"): ShuffleNetV2 1.0x written as
torchvision writes it (stem 24, stages 116/232/464 with [4, 8, 4] units, conv5 1024, ``channel_shuffle`` through
``view(batch, -1, h, w)``), and an encoder of ``nn.TransformerEncoderLayer`` (``nn.MultiheadAttention`` with its
packed in-projection), batch-first or sequence-first.

Weights are random; inputs are small (ShuffleNetV2 on 3x64x64, the encoder on 12 tokens) so exports stay fast.
"""

from __future__ import annotations

import onnx
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


class NHWCConvNet(nn.Module):
    """A Keras-style graph written in torch: the input is channels-last [N, H, W, C] and every convolution is
    wrapped in ``permute`` to NCHW and back (what TensorFlow converters write as Transpose pairs), BatchNorm and
    PReLU in between, a residual Add in NHWC, and the classifier's Flatten in NHWC order (Keras' ``Flatten``)."""

    def __init__(self, size: int = 8, channels: int = 1, width: int = 16, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.act = nn.PReLU(width)
        self.conv1 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.conv2 = nn.Conv2d(2 * width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.fc = nn.Linear(2 * width * (size // 2) ** 2, num_classes)

    @staticmethod
    def _nhwc(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._nhwc(lambda t: self.act(self.bn(self.stem(t))), x)
        y = self._nhwc(lambda t: torch.relu(self.conv1(t)), x)
        x = torch.relu(x + self._nhwc(lambda t: self.bn2(self.conv2(t)), y))
        x = self._nhwc(lambda t: torch.relu(self.down(t)), x)
        return self.fc(x.reshape(x.shape[0], -1))


class ShapeChainNet(nn.Module):
    """PaddlePaddle-style shape arithmetic: every reshape target is read from the tensor's runtime shape, so with
    dynamic batch, height and width the exporters write Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains:
    an SE gate through ``view(b, c, h * w).mean(-1).view(b, c, 1, 1)``, a grouped split ``view(b, 2, c // 2, h, w)``
    summed over the groups, and the pooled features flattened with ``reshape(b, -1)``."""

    def __init__(self, width: int = 16, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.se_reduce, self.se_expand = nn.Linear(width, width // 2), nn.Linear(width // 2, width)
        self.conv = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.head = nn.Conv2d(width, width, 1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        b, c, h, w = x.shape
        gate = torch.sigmoid(self.se_expand(torch.relu(self.se_reduce(x.view(b, c, h * w).mean(-1)))))
        x = x * gate.view(b, c, 1, 1)
        x = torch.relu(self.conv(x))
        b, c, h, w = x.shape
        x = x.view(b, 2, c // 2, h, w).sum(1)
        x = torch.relu(self.head(x))
        return self.fc(x.reshape(b, c // 2, -1).mean(-1).reshape(b, -1))


class StatefulLSTM(nn.Module):
    """A streaming text model: ``(tokens [B, T], h0, c0 [layers, B, hidden]) -> (logits [B, classes], hn, cn)``,
    the LSTM state a graph input and output with the dynamic batch (what streaming ASR/keyword models export)."""

    def __init__(self, vocab: int = 50, embed: int = 16, hidden: int = 24, layers: int = 2, num_classes: int = 5):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.proj, self.head = nn.Linear(hidden, 32), nn.Linear(32, num_classes)

    def forward(self, tokens: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor):
        y, (hn, cn) = self.lstm(self.embed(tokens), (h0, c0))
        return self.head(torch.relu(self.proj(y.mean(1)))), hn, cn


def weights_as_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with every initializer moved into a ``Constant`` node at the top of the graph, as
    PaddlePaddle's exporter writes weights (a copy; names, values and the rest of the model unchanged)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    constants = [onnx.helper.make_node("Constant", [], [t.name], name=f"{t.name}_constant", value=t)
                 for t in out.graph.initializer]
    del out.graph.initializer[:]
    nodes = constants + list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out
