"""Quantized zoo CNNs (onnxruntime's quantize_static, QDQ format, per-tensor and per-channel): every prunable group
pruned by half stays a QDQ model whose outputs equal the mask oracle's (the same quantized weights are used, so the
two agree up to float rounding: measured exactly 0 here)."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxprune as op
from onnxprune.validation.oracle import compare
from tests.support.checked import checked_prune

pytest.importorskip("onnxruntime.quantization")


class _RandomImages:
    """Calibration data reader: a few batches of random images."""

    def __init__(self, batches: int = 3):
        rng = np.random.default_rng(0)
        self._data = iter([{"x": rng.standard_normal((2, 3, 32, 32)).astype(np.float32)} for _ in range(batches)])

    def get_next(self):
        return next(self._data, None)


def quantize(path: str, out: str, per_channel: bool) -> str:
    """QDQ-quantize ``path`` (uint8 activations, int8 weights) with random calibration data."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    reader = type("Reader", (_RandomImages, CalibrationDataReader), {})()
    quantize_static(path, out, reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


@pytest.mark.parametrize("name", ["resnet_basic", "mobilenet_v2", "densenet"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_qdq_model_prunes_and_matches_the_mask_oracle(exported_model, tmp_path, name, per_channel):
    path = quantize(exported_model(name, "torchscript", False), str(tmp_path / "q.onnx"), per_channel)
    original = onnx.load(path)
    dg = op.analyse_model(path)
    groups = dg.prunable_groups()
    assert groups, dg.summary()
    plan = {g.id: list(range(0, g.size, 2)) for g in groups}
    result = checked_prune(dg, plan)
    report = compare(op.masked_model(dg, plan), result.model)
    assert report.passed and report.max_abs_diff <= 1e-5 * max(1.0, report.scale), report
    pruned = result.model
    def ops(model):  # Constant nodes become initializers when loading
        return collections.Counter(n.op_type for n in model.graph.node if n.op_type != "Constant")

    assert ops(pruned) == ops(original)
    opsets = [(i.domain, i.version) for i in original.opset_import]
    assert (pruned.ir_version, [(i.domain, i.version) for i in pruned.opset_import]) == (original.ir_version, opsets)
    inits = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer}
    for node in pruned.graph.node:  # every weight's scale and zero point still fit the (pruned) weight
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and inits[node.input[0]].ndim > 1:
            weight, scale = inits[node.input[0]], inits[node.input[1]]
            assert weight.dtype == np.int8
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            assert scale.size == (weight.shape[axis] if per_channel else 1)


def test_qdq_model_through_the_cli(exported_model, tmp_path):
    from click.testing import CliRunner

    from onnxprune.cli import main

    path = quantize(exported_model("resnet_basic", "torchscript", False), str(tmp_path / "q.onnx"), True)
    result = CliRunner().invoke(main, ["prune", path, str(tmp_path / "p.onnx"), "--ratio", "0.5"])
    assert result.exit_code == 0, result.output
    assert "validation: PASSED (mask oracle" in result.output
    onnx.checker.check_model(str(tmp_path / "p.onnx"), full_check=True)
