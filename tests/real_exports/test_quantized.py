"""Integer-quantized real exports as onnxruntime's quantizer writes them (issue 8 item 6), one per format, each
pruned at 0.5 and checked like every real export (checker, onnxruntime at two batch sizes, the mask oracle at both,
model fields kept field by field):

- ``qdq``: ``quantize_static`` in QDQ format (QuantizeLinear/DequantizeLinear around float Conv and Gemm),
  per-tensor and per-channel weight scales;
- ``qoperator``: ``quantize_static`` in QOperator format: QLinearConv prunes; its Linear layer becomes
  com.microsoft::QGemm, which has no handler, so the groups through it are refused with the reason;
- ``dynamic``: ``quantize_dynamic`` with Conv included: DynamicQuantizeLinear + ConvInteger / MatMulInteger,
  per-tensor and per-channel;
- ``dynamic_lstm_state``: ``quantize_dynamic`` of the LSTM whose state is a graph input and output
  (``models.real_exports.StatefulLSTM``): MatMulInteger head and a quantized embedding table prune, the state's
  hidden units stay with the reason.

The handler-level cases (MLP, BiLSTM as DynamicQuantizeLSTM) are in tests/handlers/test_handlers_quantize_models.py.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import onnxprune as op
from tests.support.real_export_check import prune_and_check

quantization = pytest.importorskip("onnxruntime.quantization")

BATCHES = [{"batch": 1}, {"batch": 3}]


class _Reader(quantization.CalibrationDataReader):
    def __init__(self):
        rng = np.random.default_rng(0)
        self._batches = iter([{"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)} for _ in range(4)])

    def get_next(self):
        return next(self._batches, None)


def _cnn(path) -> str:
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, groups=4),
                        nn.ReLU(), nn.Conv2d(16, 8, 1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10)).eval()
    torch.onnx.export(cnn, (torch.randn(2, 3, 8, 8),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17)
    return str(path)


def _quantized(kind: str, per_channel: bool, tmp_path, real_export) -> str:
    out = str(tmp_path / f"{kind}.{per_channel}.onnx")
    if kind == "dynamic_lstm_state":
        quantization.quantize_dynamic(real_export("stateful_lstm"), out, per_channel=per_channel,
                                      weight_type=quantization.QuantType.QInt8)
    elif kind == "dynamic":
        quantization.quantize_dynamic(_cnn(tmp_path / "cnn.onnx"), out, per_channel=per_channel,
                                      weight_type=quantization.QuantType.QInt8,
                                      op_types_to_quantize=["Conv", "MatMul", "Gemm"])
    else:
        fmt = quantization.QuantFormat.QDQ if kind == "qdq" else quantization.QuantFormat.QOperator
        quantization.quantize_static(_cnn(tmp_path / "cnn.onnx"), out, _Reader(), per_channel=per_channel,
                                     quant_format=fmt)
    model = onnx.load(out)
    onnx.helper.set_model_props(model, {"quantized": kind})
    model.model_version = 5
    onnx.save(model, out)
    return out


OPS = {"qdq": {"QuantizeLinear", "DequantizeLinear", "Conv"}, "qoperator": {"QLinearConv", "QGemm"},
       "dynamic": {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"},
       "dynamic_lstm_state": {"DynamicQuantizeLinear", "MatMulInteger", "DequantizeLinear", "LSTM"}}
SIZES = {"dynamic_lstm_state": [{"batch": 1, "seq": 5}, {"batch": 3, "seq": 9}]}
# Channel groups of each quantized model that prune (the rest are refused, each with its reason).
PRUNABLE = {"qdq": [4, 4, 8], "qoperator": [4, 4], "dynamic": [4, 4, 8], "dynamic_lstm_state": [16, 32]}


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("kind", ["qdq", "qoperator", "dynamic", "dynamic_lstm_state"])
def test_quantized_export_prunes_what_it_can_and_refuses_the_rest_with_reasons(real_export, tmp_path, kind,
                                                                               per_channel):
    path = _quantized(kind, per_channel, tmp_path, real_export)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert OPS[kind] <= ops, ops
    dg = op.analyse_model(path)
    assert sorted(g.size for g in dg.prunable_groups()) == PRUNABLE[kind], \
        [(g.size, g.blocked_reasons[:1]) for g in dg.channel_groups()]
    assert all(g.blocked_reasons for g in dg.channel_groups() if not g.prunable)
    if kind == "qoperator":
        reasons = [r for g in dg.channel_groups() for r in g.blocked_reasons]
        assert any("'com.microsoft::QGemm' is not supported" in r for r in reasons), reasons
    pruned = prune_and_check(path, tmp_path, SIZES.get(kind, BATCHES), ratio=0.5)
    weight_bytes = [sum(t.ByteSize() for t in m.graph.initializer) for m in (onnx.load(path), pruned.model)]
    assert weight_bytes[1] < weight_bytes[0], weight_bytes  # integer weights sliced (params counts floats only)
