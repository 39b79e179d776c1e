"""Real exports from another framework (issue 8): Keras 3 models built and trained here (TensorFlow CPU), converted
by tf2onnx in the test (once per session), then pruned at 0.3 and 0.5 and checked like every real export (checker,
onnxruntime at two batch sizes, the mask oracle at both, model fields kept), and measured: test accuracy of the
original, the pruned and the pruned-and-reconstructed model.

- ``cnn``: NHWC Conv/BN/ReLU stack on scikit-learn's digits (8x8x1), Keras' Flatten in NHWC order, Dense head.
  tf2onnx's optimizer pushes the NHWC Transposes out of the conv stack; the Flatten stays a Transpose + Reshape.
- ``lstm``: Embedding -> LSTM -> Dense on a synthetic recall task (which of two key tokens came first); tf2onnx
  writes one ONNX ``LSTM``.
- ``gru``: Keras 3's GRU (``reset_after``) is converted to a ``Loop`` over time steps, not to ONNX ``GRU``, its
  weights carried through the loop as state; the hidden width prunes inside the body, mask-exact.

Skipped where tensorflow or tf2onnx is not installed (both are in the ``test`` extra).
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

from onnxprune.runtime import make_session
from tests.support.real_export_check import prune_and_check
from tests.support.trained import digits_data

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
tf2onnx = pytest.importorskip("tf2onnx")
keras = pytest.importorskip("keras")

SEQ, VOCAB, CLASSES = 12, 20, 4
BATCHES = [{"batch": 1}, {"batch": 5}]


def recall_task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens 6..19 with two key tokens (1..4) at random positions; the label is the earlier key's class."""
    rng = np.random.default_rng(seed)
    x = rng.integers(6, VOCAB, (n, SEQ))
    keys = rng.integers(0, CLASSES, (n, 2))
    positions = np.sort(np.stack([rng.permutation(SEQ)[:2] for _ in range(n)]), axis=1)
    x[np.arange(n), positions[:, 0]] = keys[:, 0] + 1
    x[np.arange(n), positions[:, 1]] = keys[:, 1] + 1
    return x.astype(np.int32), keys[:, 0].astype(np.int64)


def _data(kind: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if kind == "cnn":
        digits = digits_data()
        return {part: (x.reshape(-1, 8, 8, 1), y) for part, (x, y) in
                (("train", digits.train), ("calib", digits.calib), ("test", digits.test))}
    return {"train": recall_task(3000, 0), "calib": recall_task(256, 1), "test": recall_task(500, 2)}


def _keras_model(kind: str):
    layers = keras.layers
    if kind == "cnn":
        return keras.Sequential([
            keras.Input((8, 8, 1)), layers.Conv2D(32, 3, padding="same"), layers.BatchNormalization(momentum=0.9),
            layers.ReLU(), layers.Conv2D(32, 3, padding="same"), layers.BatchNormalization(momentum=0.9),
            layers.ReLU(), layers.MaxPooling2D(), layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dense(10)])
    recurrent = layers.LSTM(32) if kind == "lstm" else layers.GRU(32)
    return keras.Sequential([keras.Input((SEQ,), dtype="int32"), layers.Embedding(VOCAB, 16), recurrent,
                             layers.Dense(32, activation="relu"), layers.Dense(CLASSES)])


def train_and_convert(kind: str, path: str) -> tuple[str, dict]:
    """Train the Keras model of ``kind`` (seeded, a few seconds) and convert it with tf2onnx (opset 17, dynamic
    batch) to ``path``; returns the path and the data splits."""
    keras.utils.set_random_seed(0)
    data = _data(kind)
    model = _keras_model(kind)
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(*data["train"], epochs=15 if kind == "cnn" else 8, batch_size=64, verbose=0)
    x = data["train"][0]
    spec = (tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype), name="x"),)
    function = tf.function(lambda inputs: model(inputs, training=False), autograph=False)
    tf2onnx.convert.from_function(function, input_signature=spec, opset=17, output_path=path)
    converted = onnx.load(path)
    onnx.helper.set_model_props(converted, {"labels": ",".join(map(str, range(10 if kind == "cnn" else CLASSES)))})
    converted.model_version, converted.doc_string = 2, f"keras {kind} via tf2onnx"
    onnx.save(converted, path)
    return path, data


@pytest.fixture(scope="session")
def keras_export(tmp_path_factory):
    """``get(kind) -> (path, data)``: the Keras model trained and converted once per session."""
    out_dir = tmp_path_factory.mktemp("keras")
    cache: dict[str, tuple[str, dict]] = {}

    def get(kind: str) -> tuple[str, dict]:
        if kind not in cache:
            cache[kind] = train_and_convert(kind, str(out_dir / f"keras_{kind}.onnx"))
        return cache[kind]

    return get


def accuracy(model: str | onnx.ModelProto, data: tuple[np.ndarray, np.ndarray]) -> float:
    """Top-1 accuracy of an ONNX model on (x, y) with onnxruntime."""
    session = make_session(model)
    logits = session.run(None, {session.get_inputs()[0].name: data[0]})[0]
    return float((logits.argmax(1) == data[1]).mean())


@pytest.mark.parametrize("ratio", [pytest.param(0.3, marks=pytest.mark.slow), 0.5])
@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_keras_model_prunes_exactly_and_reconstruction_recovers_accuracy(keras_export, tmp_path, kind, ratio):
    path, data = keras_export(kind)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert ("Conv" in ops) if kind == "cnn" else ("LSTM" in ops), ops
    base = accuracy(path, data["test"])
    assert base > (0.9 if kind == "cnn" else 0.8), base
    pruned = prune_and_check(path, tmp_path, BATCHES, ratio=ratio)
    assert pruned.macs["after"] < (1 - ratio / 2) * pruned.macs["before"], pruned.macs
    if kind == "lstm":  # every one of the 12 steps counts (X is [seq, batch, 16] after tf2onnx's Transpose)
        assert pruned.macs["before"] == SEQ * 4 * 32 * (16 + 32) + 32 * 32 + 32 * CLASSES, pruned.macs
    structural = accuracy(pruned.model, data["test"])
    calib = {"x": data["calib"][0]}
    refit = prune_and_check(path, tmp_path, BATCHES, oracle=False, ratio=ratio, calib=calib)
    assert refit.report["reconstruction"] and refit.report["fidelity"]
    recovered = accuracy(refit.model, data["test"])
    print(f"keras {kind} ratio {ratio}: accuracy {base:.3f} -> pruned {structural:.3f} -> reconstructed "
          f"{recovered:.3f}; MACs {pruned.macs['before']} -> {pruned.macs['after']}")
    assert recovered >= structural - 0.01 and recovered >= base - (0.05 if ratio < 0.5 else 0.12)


@pytest.mark.slow
def test_keras_gru_loop_prunes_its_hidden_width_exactly(keras_export, tmp_path):
    """The GRU's weights are loop-carried state of tf2onnx's Loop (passed through unchanged) and its hidden state h
    is [batch, 32]; with the state typed (``onnxprune.ir.loop_state``) the hidden width is one group across the
    body's Split gate blocks, and removing units is mask-exact (the oracle masks h inside the body every step)."""
    path, data = keras_export("gru")
    assert "Loop" in {n.op_type for n in onnx.load(path).graph.node}
    pruned = prune_and_check(path, tmp_path, BATCHES, ratio=0.5)
    dg = pruned.plan.depgraph
    hidden = [g for g in dg.prunable_groups() if "/gru" in g.root.tensor]  # Keras numbers names per process
    assert hidden and {g.size for g in hidden} == {32}, [(g.root, g.size) for g in dg.prunable_groups()]
    untyped = [r for g in dg.channel_groups() for r in g.blocked_reasons if "could not type the body" in r]
    assert not untyped, untyped
    assert pruned.report["macs"]["before"] == 12 * 3 * 32 * (16 + 32) + 32 * 32 + 32 * CLASSES  # body x 12 trips
    assert pruned.report["macs"]["after"] < 0.5 * pruned.report["macs"]["before"], pruned.report["macs"]
    base, structural = accuracy(path, data["test"]), accuracy(pruned.model, data["test"])
    print(f"keras gru ratio 0.5: accuracy {base:.3f} -> pruned {structural:.3f}; MACs {pruned.report['macs']}")
    assert base > 0.8
