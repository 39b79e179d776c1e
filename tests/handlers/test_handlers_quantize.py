"""QuantizeLinear / DequantizeLinear (QDQ) handlers: per-channel scales and zero points follow their axis and are
sliced with the weights, per-tensor ones couple nothing, blocked quantisation and integer ops are refused."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.checked import checked_prune
from tests.support.handlers_util import analyse, check_all_prunable, group_of, header, initializer, member_axes

RNG = np.random.default_rng(0)


def _qweight(*shape: int) -> np.ndarray:
    return RNG.integers(-127, 128, size=shape).astype(np.int8)


QDQ_CONV = """
    agraph (float[N,3,8,8] x) => (float[N,5,8,8] y) <int8[4,3,3,3] wq, float{s1} s1, int8{s1} z1, float[4] b,
                                                     int8[5,4,1,1] vq, float{s2} s2, int8{s2} z2,
                                                     float as, uint8 az> {{
      w = DequantizeLinear <axis=0> (wq, s1, z1)
      h = Conv <pads=[1,1,1,1]> (x, w, b)
      r = Relu (h)
      q = QuantizeLinear (r, as, az)
      d = DequantizeLinear (q, as, az)
      w2 = DequantizeLinear <axis=0> (vq, s2, z2)
      y = Conv (d, w2)
    }}"""


def _qdq_conv(per_channel: bool):
    shapes = {"s1": "[4]", "s2": "[5]"} if per_channel else {"s1": "", "s2": ""}
    consts = {"wq": _qweight(4, 3, 3, 3), "vq": _qweight(5, 4, 1, 1), "as": np.array(0.05, np.float32),
              "az": np.array(128, np.uint8)}
    for name, size in (("1", 4), ("2", 5)):
        n = size if per_channel else 1
        scale = RNG.uniform(0.01, 0.02, n).astype(np.float32)
        zero = RNG.integers(-3, 4, n).astype(np.int8)
        consts["s" + name] = scale if per_channel else scale.reshape(())
        consts["z" + name] = zero if per_channel else zero.reshape(())
    return analyse(header(opset=13) + QDQ_CONV.format(**shapes), **consts)


@pytest.mark.parametrize("per_channel", [True, False])
def test_qdq_conv_chain_prunes_quantized_weights_and_per_channel_scales(per_channel):
    dg = _qdq_conv(per_channel)
    g = group_of(dg, "wq", 0)
    expected = {("wq", 0), ("w", 0), ("b", 0), ("h", 1), ("r", 1), ("q", 1), ("d", 1), ("w2", 1), ("vq", 1)}
    if per_channel:
        expected |= {("s1", 0), ("z1", 0)}
    assert member_axes(g) == expected and g.prunable and g.exact
    check_all_prunable(dg, expect=1)
    model = checked_prune(dg, {g.id: [0, 2]}).model
    assert initializer(model, "wq").shape == (2, 3, 3, 3) and initializer(model, "wq").dtype == np.int8
    assert initializer(model, "vq").shape == (5, 2, 1, 1)
    assert initializer(model, "s1").shape == ((2,) if per_channel else ())
    assert initializer(model, "s2").shape == ((5,) if per_channel else ())
    assert initializer(model, "as").shape == ()


def test_dequantized_weight_counts_for_magnitude_importance():
    from onnxprune.scoring.importance import parameter_roles

    assert parameter_roles(_qdq_conv(True))["wq"] == "weight"


def test_quantize_linear_per_axis_on_a_negative_axis():
    dg = analyse(header(opset=13) + """
    agraph (float[N,3] x) => (float[N,5] y) <float[3,4] w, float[4] s, uint8[4] z, float[4,5] w2> {
      h = MatMul (x, w)
      q = QuantizeLinear <axis=-1> (h, s, z)
      d = DequantizeLinear <axis=-1> (q, s, z)
      y = MatMul (d, w2)
    }""", s=RNG.uniform(0.01, 0.1, 4).astype(np.float32), z=np.full(4, 128, np.uint8))
    g = group_of(dg, "w", 1)
    assert {("s", 0), ("z", 0), ("q", 1), ("d", 1)} <= member_axes(g)
    check_all_prunable(dg, expect=1)


def test_blocked_quantization_is_refused_with_the_reason():
    dg = analyse(header(opset=21, ir=10) + """
    agraph (float[N,8] x) => (float[N,5] y) <float[8,4] w, int8[4,5] wq, float[2,5] s> {
      h = MatMul (x, w)
      w2 = DequantizeLinear <axis=0, block_size=2> (wq, s)
      y = MatMul (h, w2)
    }""", wq=_qweight(4, 5), s=RNG.uniform(0.01, 0.1, (2, 5)).astype(np.float32))
    g = group_of(dg, "w", 1)
    assert not g.prunable
    assert any(r.startswith("blocked quantization (block_size=2) is not supported") for r in g.blocked_reasons)


@pytest.mark.parametrize("op_type", ["QLinearConv", "ConvInteger"])
def test_integer_convs_couple_like_conv_and_match_the_oracle(op_type):
    inputs = {"QLinearConv": "xq, xs, xz, wq, ws, wz, ys, yz", "ConvInteger": "xq, wq, xz, wz"}[op_type]
    out = "yq" if op_type == "QLinearConv" else "yi"
    out_type = "uint8" if op_type == "QLinearConv" else "int32"
    per_axis = op_type == "QLinearConv"  # onnxruntime's ConvInteger takes a per-tensor weight zero point only
    wz_type = "uint8[2]" if per_axis else "uint8"
    dg = analyse(header(opset=13) + f"""
    agraph (float[N,3,8,8] x) => ({out_type}[N,2,8,8] {out}) <float[4,3,1,1] w, float xs, uint8 xz, uint8[2,4,1,1] wq,
                                                  {wz_type} wz, float[2] ws, float ys, uint8 yz> {{
      h = Conv (x, w)
      xq = QuantizeLinear (h, xs, xz)
      {out} = {op_type} ({inputs})
    }}""", xs=np.array(0.1, np.float32), xz=np.array(128, np.uint8),
                 wq=RNG.integers(0, 256, (2, 4, 1, 1)).astype(np.uint8),
                 wz=np.array([120, 135] if per_axis else 131, np.uint8),
                 ws=np.array([0.01, 0.02], np.float32), ys=np.array(0.1, np.float32), yz=np.array(128, np.uint8))
    g = group_of(dg, "w", 0)
    assert {("h", 1), ("xq", 1), ("wq", 1)} <= member_axes(g) and g.prunable and g.exact
    if per_axis:  # the zero point follows the weight's output channel (an output of the graph: protected)
        assert ("wq", 0) in member_axes(group_of(dg, "wz", 0)) and not group_of(dg, "wz", 0).prunable
    check_all_prunable(dg, expect=1)


@pytest.mark.parametrize("op_type,line", [
    ("QLinearMatMul", "y = QLinearMatMul (hq, hs, hz, bq, bs, bz, hs, hz)"),
    ("MatMulInteger", "y = MatMulInteger (hq, bq, hz, bz)"),
    ("DynamicQuantizeLinear", "d, ds, dz = DynamicQuantizeLinear (h)\n      y = MatMulInteger (d, bq, dz, bz)"),
])
def test_integer_matmuls_and_dynamic_quantization_prune_exactly(op_type, line):
    out = {"QLinearMatMul": "uint8[N,2] y", "MatMulInteger": "int32[N,2] y",
           "DynamicQuantizeLinear": "int32[N,2] y"}[op_type]
    dg = analyse(header(opset=13) + f"""
    agraph (float[N,3] x) => ({out}) <float[3,4] w, float hs, uint8 hz, uint8[4,2] bq, float[2] bs, uint8[2] bz> {{
      h = MatMul (x, w)
      hq = QuantizeLinear (h, hs, hz)
      {line}
    }}""", hs=np.array(0.1, np.float32), hz=np.array(128, np.uint8),
                 bq=RNG.integers(0, 256, (4, 2)).astype(np.uint8), bs=np.array([0.01, 0.02], np.float32),
                 bz=np.array([127, 131], np.uint8))
    g = group_of(dg, "w", 1)
    expected = {("h", 1), ("bq", 0)} | ({("d", 1)} if op_type == "DynamicQuantizeLinear" else {("hq", 1)})
    assert expected <= member_axes(g) and g.prunable and g.exact
    check_all_prunable(dg, expect=1)


def test_per_axis_activation_scale_of_qlinearconv_is_refused_with_the_reason():
    dg = analyse(header(opset=13) + """
    agraph (float[N,3,8,8] x) => (uint8[N,2,8,8] yq) <float[4,3,1,1] w, float[4] xs, uint8[4] xz, int8[2,4,1,1] wq,
                                                      float ws, int8 wz, float ys, uint8 yz> {
      h = Conv (x, w)
      xq = QuantizeLinear (h, xs, xz)
      yq = QLinearConv (xq, xs, xz, wq, ws, wz, ys, yz)
    }""", xs=np.full(4, 0.1, np.float32), xz=np.full(4, 128, np.uint8), wq=_qweight(2, 4, 1, 1),
                 ws=np.array(0.01, np.float32), wz=np.array(0, np.int8), ys=np.array(0.1, np.float32),
                 yz=np.array(128, np.uint8))
    g = group_of(dg, "w", 0)
    assert not g.prunable
    assert any(r.startswith("per-axis activation quantization ('xs') is not supported") for r in g.blocked_reasons)
