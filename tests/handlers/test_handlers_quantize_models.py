"""Integer-quantized models as onnxruntime's quantizer writes them, from small torch models exported in the test:
``quantize_dynamic`` (DynamicQuantizeLinear + MatMulInteger for Linear, com.microsoft::DynamicQuantizeLSTM for an
LSTM) and ``quantize_static`` in QOperator format (QLinearConv), per-tensor and per-channel weights.

Every prunable group is pruned by half; the pruned model must pass the checker, run in onnxruntime at two batch
sizes and match the mask oracle. For the MLP and the CNN exactness holds bit for bit (tolerance 0): a removed
input channel's weights are set to their zero point in the oracle, so its integer term is exactly 0, the int32
sums are the same, and the requantization and the float ops after it see the same numbers; DynamicQuantizeLinear's
range always holds 0, so the zeroed channels leave its scale as pruning them does. DynamicQuantizeLSTM's float
gate arithmetic runs over fewer units once pruned (other vector lanes): there the default oracle tolerance
applies (measured: 1.5e-8).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import onnxprune as op
from onnxprune.runtime import make_session
from onnxprune.validation.oracle import compare

quantization = pytest.importorskip("onnxruntime.quantization")


class _Reader(quantization.CalibrationDataReader):
    """A few random batches for quantize_static's calibration."""

    def __init__(self, name: str, shape: tuple[int, ...]):
        rng = np.random.default_rng(0)
        self._batches = iter([{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(4)])

    def get_next(self):
        return next(self._batches, None)


class _LSTMText(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.head = nn.Embedding(50, 16), nn.Linear(48, 5)
        self.lstm = nn.LSTM(16, 24, bidirectional=True, batch_first=True)

    def forward(self, tokens):
        return self.head(self.lstm(self.embed(tokens))[0].mean(1))


def _export(module: nn.Module, example: torch.Tensor, path) -> str:
    torch.manual_seed(0)
    torch.onnx.export(module.eval(), (example,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17)
    return str(path)


def _quantized(kind: str, per_channel: bool, tmp_path) -> str:
    torch.manual_seed(0)
    out = str(tmp_path / f"{kind}.quant.onnx")
    if kind == "mlp":
        mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 10))
        src = _export(mlp, torch.randn(2, 16), tmp_path / "mlp.onnx")
        quantization.quantize_dynamic(src, out, per_channel=per_channel, weight_type=quantization.QuantType.QInt8)
    elif kind == "lstm":
        src = _export(_LSTMText(), torch.randint(0, 50, (2, 7)), tmp_path / "lstm.onnx")
        quantization.quantize_dynamic(src, out, per_channel=per_channel, weight_type=quantization.QuantType.QInt8)
    else:
        cnn = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, groups=4),
                            nn.ReLU(), nn.Conv2d(16, 8, 1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10))
        src = _export(cnn, torch.randn(2, 3, 8, 8), tmp_path / "cnn.onnx")
        quantization.quantize_static(src, out, _Reader("x", (2, 3, 8, 8)), per_channel=per_channel,
                                     quant_format=quantization.QuantFormat.QOperator)
    return out


OPS = {"mlp": {"DynamicQuantizeLinear", "MatMulInteger"}, "lstm": {"com.microsoft::DynamicQuantizeLSTM"},
       "cnn": {"QLinearConv"}}


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("kind", ["mlp", "lstm", "cnn"])
def test_quantized_model_prunes_and_matches_the_oracle_exactly(kind, per_channel, tmp_path):
    path = _quantized(kind, per_channel, tmp_path)
    ops = {(f"{n.domain}::" if n.domain else "") + n.op_type for n in onnx.load(path).graph.node}
    assert OPS[kind] <= ops
    dg = op.analyse_model(path)
    groups = dg.prunable_groups()
    assert len(groups) == 2 and all(g.exact for g in groups), [g.blocked_reasons for g in dg.groups]
    plan = {g.id: list(range(0, g.size, 2)) for g in groups}
    model = op.apply_plan(dg, plan).model
    onnx.checker.check_model(model, full_check=True)
    session = make_session(model)
    masked = op.masked_model(dg, plan)
    for batch in (1, 3):
        feeds = _feeds(session, batch)
        assert session.run(None, feeds)[0].shape[0] == batch
        report = compare(masked, model, feeds, atol=0.0 if kind != "lstm" else None)
        assert report.passed, report.summary()
    before = sum(t.ByteSize() for t in onnx.load(path).graph.initializer)
    assert sum(t.ByteSize() for t in model.graph.initializer) < before


def _feeds(session, batch: int) -> dict:
    rng = np.random.default_rng(batch)
    spec = session.get_inputs()[0]
    shape = [batch] + [d for d in spec.shape[1:]]
    if "int" in spec.type:
        return {spec.name: rng.integers(0, 50, shape).astype(np.int64)}
    return {spec.name: rng.standard_normal(shape).astype(np.float32)}


def test_qgemm_of_the_static_quantizer_stays_opaque_with_the_reason(tmp_path):
    """quantize_static writes Linear layers as com.microsoft::QGemm, which has no handler: its groups are refused
    with the reason, the convolutions before it still prune (test above)."""
    dg = op.analyse_model(_quantized("cnn", False, tmp_path))
    reasons = [r for g in dg.groups for r in g.blocked_reasons]
    assert any("op 'com.microsoft::QGemm' is not supported (opaque)" in r for r in reasons)
