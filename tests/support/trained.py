"""Models trained in the tests, in about a second on CPU, on scikit-learn's bundled digits (1797 8x8 images, 10
classes): accuracy claims are only made on such models, never on random weights.

``digits_mlp(path, widths)`` trains a ReLU MLP 64 -> widths... -> 10 and exports it with TorchScript (dynamic
batch); ``digits_data()`` gives the train / calibration / held-out / test splits as float32 arrays. Everything is
seeded, so the same call gives the same model.
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from sklearn.datasets import load_digits
from torch import nn

from onnxprune.runtime import make_session


@dataclass(frozen=True)
class Digits:
    """Splits of the digits data: ``train`` fits the model, ``calib`` feeds pruning decisions, ``held_out``
    checks accuracy targets, ``test`` is only used to measure accuracy. Each is (x float32 [N, 64], y int64 [N])."""

    train: tuple[np.ndarray, np.ndarray]
    calib: tuple[np.ndarray, np.ndarray]
    held_out: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


@functools.cache
def digits_data() -> Digits:
    """The digits, pixel values scaled to [0, 1], shuffled with seed 0: 1000 train, 256 calibration, 256 held-out,
    the rest (285) test."""
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    cuts = [0, 1000, 1256, 1512, len(x)]
    parts = [(x[a:b], y[a:b]) for a, b in zip(cuts, cuts[1:])]
    return Digits(*parts)


def _mlp(widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    previous = 64
    for width in widths:
        layers += [nn.Linear(previous, width), nn.ReLU()]
        previous = width
    layers.append(nn.Linear(previous, 10))
    return nn.Sequential(*layers)


def train_mlp(widths: tuple[int, ...], epochs: int = 60, seed: int = 0) -> nn.Sequential:
    """An MLP 64 -> widths -> 10 trained with Adam on the train split (batches of 125, ``epochs`` x 8 steps), on one
    thread: these matrices are tiny, and on a busy machine several threads made training 30 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = _mlp(tuple(widths))
        x, y = (torch.from_numpy(a) for a in digits_data().train)
        optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(epochs):
            for batch in torch.randperm(len(x)).split(125):
                optimiser.zero_grad()
                nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimiser.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def export_mlp(model: nn.Module, path) -> str:
    """TorchScript export with a dynamic batch (input ``x`` [N, 64], output ``logits`` [N, 10]), checked."""
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 64),), str(path), dynamo=False, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}}, opset_version=17)
    onnx.checker.check_model(str(path), full_check=True)
    return str(path)


def digits_mlp(path, widths: tuple[int, ...] = (96, 96), epochs: int = 60, seed: int = 0) -> str:
    """Train an MLP on the digits and export it to ``path``; returns the path."""
    return export_mlp(train_mlp(widths, epochs, seed), path)


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of an ONNX model (path, ModelProto or ExportedModel) with input ``x`` on labels ``y``."""
    logits = make_session(model, "cpu").run(None, {"x": x})[0]
    return float(np.mean(logits.argmax(axis=1) == y))
