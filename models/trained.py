"""Small models trained in seconds on CPU, for accuracy claims (never made on random weights).

- ``digits_resnet``: ResNet-style CNN (BatchNormalization kept in the export, a 1x1 downsample shortcut) on
  scikit-learn's bundled digits (8x8 grey images, 10 classes).
- ``digits_mobilenet``: MobileNetV2-style inverted residuals (1x1 expand, 3x3 depthwise, 1x1 project, ReLU6) on
  the digits.
- ``seq_lstm``: 2-layer LSTM classifier on a synthetic sequence task (16 steps of 6 features; the class is which
  of the first 4 features has the largest sum over time).
- ``tokens_transformer``: 2 pre-LN transformer blocks (4 heads of 8, MLP 64) over 12 tokens of a 16-token vocabulary;
  the class is (count(0) >= count(1)) * 2 + (count(2) >= count(3)).

``train(name, out_dir)`` trains (seeded: the same call gives the same weights), exports with ``models.export``
(TorchScript, checked) and returns a TrainedModel with calibration samples (from the training split) and the test
split the accuracy is measured on. Each takes 2-15 s on two CPU cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from onnxprune.runtime import make_session

from . import ModelSpec, export
from .transformers import PreNormBlock


@dataclass(frozen=True)
class TrainedModel:
    """A trained, exported model: ``path``, its one input's name, calibration inputs (training samples), the test
    split and the test accuracy of the exported model as onnxruntime runs it."""

    name: str
    path: str
    input_name: str
    calib: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    accuracy: float


def accuracy(model, x: np.ndarray, y: np.ndarray, input_name: str, batch: int = 256) -> float:
    """Top-1 accuracy of ``model`` (a path, ModelProto or ExportedModel) on (x, y), run by onnxruntime."""
    session = make_session(model, "cpu")
    predictions = [session.run(None, {input_name: x[s:s + batch]})[0].argmax(axis=1) for s in range(0, len(x), batch)]
    return float(np.mean(np.concatenate(predictions) == y))


# ------------------------------------------------------------------------------------------------ data
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits as float32 [1797, 1, 8, 8] in [0, 1] and int64 labels, shuffled with seed 0."""
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    return (data.images[order, None] / 16.0).astype(np.float32), data.target[order].astype(np.int64)


def sequences(count: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """[count, 16, 6] float32 normal steps; class = argmax over the first 4 features of their sum over time."""
    x = np.random.default_rng(1).standard_normal((count, 16, 6)).astype(np.float32)
    return x, x[:, :, :4].sum(axis=1).argmax(axis=1).astype(np.int64)


def tokens(count: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """[count, 12] int64 tokens in [0, 16); class = (count(0) >= count(1)) * 2 + (count(2) >= count(3))."""
    x = np.random.default_rng(2).integers(0, 16, size=(count, 12)).astype(np.int64)
    counts = np.stack([(x == t).sum(axis=1) for t in range(4)], axis=1)
    return x, ((counts[:, 0] >= counts[:, 1]) * 2 + (counts[:, 2] >= counts[:, 3])).astype(np.int64)


# ------------------------------------------------------------------------------------------------ models
class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.short = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class DigitsResNet(nn.Module):
    """[N, 1, 8, 8] -> 10 logits: stem 24, blocks 24 and 48 (stride 2, 1x1 downsample), pool, Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 24, 3, 1, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.blocks = nn.Sequential(_Block(24, 24, 1), _Block(24, 48, 2))
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU6()) if act else nn.Sequential(*layers)


class _Inverted(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4):
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(_conv_bn(cin, mid, 1), _conv_bn(mid, mid, 3, stride, groups=mid),
                                  _conv_bn(mid, cout, 1, act=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class DigitsMobileNet(nn.Module):
    """[N, 1, 8, 8] -> 10 logits: stem 16, inverted residuals 16 -> 16, 16 -> 32 (stride 2), 1x1 to 64, Linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(_conv_bn(1, 16, 3), _Inverted(16, 16, 1), _Inverted(16, 32, 2),
                                      _conv_bn(32, 64, 1))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


class SeqLSTM(nn.Module):
    """[N, 16, 6] -> 4 logits: 2-layer LSTM (hidden 32, batch first), last step, Linear."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 32, num_layers=2, batch_first=True)
        self.fc = nn.Linear(32, 4)

    def forward(self, x):
        return self.fc(self.lstm(x)[0][:, -1])


class TokenEncoder(nn.Module):
    """[N, 12] tokens -> 4 logits: embeddings 32 + positions, 2 pre-LN blocks (4 heads of 8, MLP 64), final LN,
    mean over tokens, Linear."""

    def __init__(self):
        super().__init__()
        self.tok, self.pos = nn.Embedding(16, 32), nn.Parameter(torch.randn(1, 12, 32) * 0.02)
        self.blocks = nn.ModuleList(PreNormBlock(32, 4, 64, head_dim=8) for _ in range(2))
        self.norm, self.head = nn.LayerNorm(32), nn.Linear(32, 4)

    def forward(self, x):
        h = self.tok(x) + self.pos
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h).mean(dim=1))


@dataclass(frozen=True)
class _Recipe:
    build: Callable[[], nn.Module]
    data: Callable[[], tuple[np.ndarray, np.ndarray]]
    train: int
    epochs: int
    lr: float
    input_name: str
    kind: str


RECIPES = {
    "digits_resnet": _Recipe(DigitsResNet, digits, 1200, 6, 5e-3, "x", "cnn"),
    "digits_mobilenet": _Recipe(DigitsMobileNet, digits, 1200, 10, 1e-2, "x", "cnn"),
    "seq_lstm": _Recipe(SeqLSTM, sequences, 2400, 25, 5e-3, "x", "rnn"),
    "tokens_transformer": _Recipe(TokenEncoder, tokens, 2400, 8, 3e-3, "tokens", "transformer"),
}
CALIBRATION_SAMPLES = 320  # from the training split; 20% of them are held out by the calibration loader


def _fit(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float) -> nn.Module:
    torch.manual_seed(0)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * -(-len(x) // 64))
    generator = torch.Generator().manual_seed(0)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is as fast, and does not fight other processes
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xt[batch]), yt[batch]).backward()
            optimizer.step()
            schedule.step()
    torch.set_num_threads(threads)
    return model.eval()


def train(name: str, out_dir: str | os.PathLike) -> TrainedModel:
    """Train model ``name`` (a key of RECIPES), export it to ``out_dir/<name>.onnx`` and measure its test accuracy."""
    recipe = RECIPES[name]
    x, y = recipe.data()
    torch.manual_seed(0)
    model = _fit(recipe.build(), x[:recipe.train], y[:recipe.train], recipe.epochs, recipe.lr)
    spec = ModelSpec(name, lambda: model, lambda batch=2: (torch.from_numpy(x[:batch]),), (recipe.input_name,),
                     {recipe.input_name: {0: "batch"}, "output": {0: "batch"}}, recipe.kind)
    path = export(spec, os.path.join(os.fspath(out_dir), f"{name}.onnx"), keep_bn=True)
    test_x, test_y = x[recipe.train:], y[recipe.train:]
    return TrainedModel(name, path, recipe.input_name, x[:CALIBRATION_SAMPLES], test_x, test_y,
                        accuracy(path, test_x, test_y, recipe.input_name))
