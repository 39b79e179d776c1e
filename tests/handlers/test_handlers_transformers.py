"""Handlers transformers need, on textual ONNX: Softmax/LogSoftmax, Einsum, the position plumbing (Range, Trilu,
CumSum, GatherElements, GatherND), RMSNormalization, labels on attention and norm axes, and the shape-subgraph
cases exporters write (TorchScript's expand(-1), flatten's Slice of Shape, GPT-2's [B*T, C] Gemm, reshape targets
shared by q/k/v, head counts computed from Shape)."""

from __future__ import annotations

import numpy as np
import pytest
from onnxprune.op_handlers.einsum import parse_equation

import onnxprune as op
from tests.support.checked import checked_prune
from tests.support.handlers_util import (
    analyse,
    check_all_prunable,
    group_of,
    header,
    initializer,
    member_axes,
    prune_and_compare,
)


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset,axis,channel_inexact", [(13, -1, True), (13, 0, False), (11, 1, True)])
def test_softmax_axis_is_inexact_only_where_it_is_a_channel_axis(op_type, opset, axis, channel_inexact):
    dg = analyse(header(opset) + f"""
    agraph (float[N,8] x) => (float[N,4] y) <float[8,6] w1, float[6,4] w2> {{
      h = MatMul (x, w1)
      s = {op_type} <axis={axis}> (h)
      y = MatMul (s, w2)
    }}""")
    g = group_of(dg, "w1", 1)
    assert member_axes(g) == {("w1", 1), ("h", 1), ("s", 1), ("w2", 0)} and g.exact != channel_inexact
    check_all_prunable(dg, expect=1)


def test_hardmax_over_a_batch_axis_leaves_channels_exact():
    dg = analyse(header(13) + """
    agraph (float[N,8] x) => (float[N,4] y) <float[8,6] w1, float[6,4] w2> {
      h = MatMul (x, w1)
      s = Hardmax <axis=0> (h)
      y = MatMul (s, w2)
    }""")
    assert group_of(dg, "w1", 1).exact
    check_all_prunable(dg, expect=1)


def test_softmax_over_the_key_axis_of_attention_scores_keeps_heads_exact():
    dg = analyse(header() + """
    agraph (float[N,T,8] x) => (float[N,T,8] y) <float[8,8] wq, float[8,8] wk, float[8,8] wv, float[8,8] wo,
                                                     int64[4] shape_q, int64[3] shape_m> {
      q = MatMul (x, wq)
      k = MatMul (x, wk)
      v = MatMul (x, wv)
      q4 = Reshape (q, shape_q)
      k4 = Reshape (k, shape_q)
      v4 = Reshape (v, shape_q)
      qt = Transpose <perm=[0,2,1,3]> (q4)
      kt = Transpose <perm=[0,2,3,1]> (k4)
      vt = Transpose <perm=[0,2,1,3]> (v4)
      s = MatMul (qt, kt)
      p = Softmax <axis=-1> (s)
      c = MatMul (p, vt)
      ct = Transpose <perm=[0,2,1,3]> (c)
      m = Reshape (ct, shape_m)
      o = MatMul (m, wo)
      y = Add (o, x)
    }""", shape_q=np.array([0, 0, 2, 4]), shape_m=np.array([0, 0, 8]),
        options=op.AnalysisOptions(factor_policy="leading", allowed_io_axes={op.ChannelAxis("x", 2),
                                                                             op.ChannelAxis("y", 2)}))
    heads = group_of(dg, "wq", 1)
    assert heads.size == 2 and heads.labels == {"heads"} and heads.exact
    assert {("wk", 1), ("wv", 1), ("wo", 0), ("s", 1), ("p", 1)} <= member_axes(heads)
    _, passed = prune_and_compare(dg, heads.id, [1])
    assert passed


def test_einsum_equations_parse_with_ellipsis_and_implicit_output():
    assert parse_equation("bi,ij->bj", [2, 2]) == ([["b", "i"], ["i", "j"]], ["b", "j"])
    assert parse_equation("...i,ij->...j", [3, 2]) == ([[".0", ".1", "i"], ["i", "j"]], [".0", ".1", "j"])
    assert parse_equation("bi,ij", [2, 2]) == ([["b", "i"], ["i", "j"]], ["b", "j"])
    assert parse_equation("b...d,d->b...", [4, 1])[1] == ["b", ".0", ".1"]
    with pytest.raises(ValueError):
        parse_equation("bij,jk->bik", [2, 2])


@pytest.mark.parametrize("equation,x_shape", [("bi,ij->bj", "N,4"), ("...i,ij->...j", "N,T,4"),
                                              ("abi,ij", "N,T,4"), ("bti,ji->btj", "N,T,4")])
def test_einsum_linear_layers_prune_like_matmul(equation, x_shape):
    rank = len(x_shape.split(","))
    w1 = "6,4" if equation == "bti,ji->btj" else "4,6"
    out = ",".join(x_shape.split(",")[:-1] + ["3"])
    dg = analyse(header(12) + f"""
    agraph (float[{x_shape}] x) => (float[{out}] y) <float[{w1}] w1, float[6,3] w2> {{
      h = Einsum <equation="{equation}"> (x, w1)
      r = Relu (h)
      y = Einsum <equation="...i,ij->...j"> (r, w2)
    }}""")
    out_axis = 0 if w1 == "6,4" else 1
    g = group_of(dg, "w1", out_axis)
    assert g.root == ("w1", out_axis) and member_axes(g) == {("w1", out_axis), ("h", rank - 1), ("r", rank - 1),
                                                              ("w2", 0)}
    check_all_prunable(dg, expect=1)
    assert initializer(checked_prune(dg, {g.id: [0, 2]}).model, "w2").shape == (4, 3)


def test_einsum_attention_labels_heads_and_blocks_diagonals():
    dg = analyse(header(12) + """
    agraph (float[N,T,4,8] q, float[N,T,4,8] k, float[5,5] m) => (float[N,4,T,T] s, float[5] d) {
      s = Einsum <equation="bqhd,bkhd->bhqk"> (q, k)
      d = Einsum <equation="ii->i"> (m)
    }""", options=op.AnalysisOptions(protect_io=False))
    labels = dg.record.labels
    assert labels[op.ChannelAxis("q", 2)] == {"heads"} and labels[op.ChannelAxis("k", 3)] == {"head_dim"}
    assert dg.record.blocks[op.ChannelAxis("m", 0)] and dg.record.blocks[op.ChannelAxis("m", 1)]


def test_position_plumbing_blocks_positions_and_passes_channels():
    dg = analyse(header(17) + """
    agraph (float[N,6,6] x, int64[N,6,6] idx, int64[N,6,1] nd) => (float[N,6,6] y, float[N,6,6] z, float[N,6,6] c,
                                                                    float[N,6,4] g, float[N,6,6] r)
        <float[6,6] w1, float[6,4] w2, int64 ax> {
      h = MatMul (x, w1)
      y = Trilu <upper=1> (x)
      z = GatherElements <axis=1> (x, idx)
      c = CumSum (x, ax)
      g = MatMul (h, w2)
      r = GatherND <batch_dims=1> (x, nd)
    }""", w1=np.ones((6, 6), np.float32), w2=np.ones((6, 4), np.float32), ax=np.array(1),
        options=op.AnalysisOptions(protect_io=False))
    blocks = dg.record.blocks
    assert blocks[op.ChannelAxis("y", 1)] and blocks[op.ChannelAxis("y", 2)]  # Trilu's triangle
    assert blocks[op.ChannelAxis("x", 1)]  # gathered / summed along axis 1
    assert op.ChannelAxis("nd", 2) in blocks
    assert member_axes(group_of(dg, "w2", 1)) == {("w2", 1), ("g", 2)}


def test_range_output_is_a_sequence_axis():
    dg = analyse(header(17) + """
    agraph (float[N,T,4] x) => (float[N,T,4] y) <float[16,4] pos, int64 one, int64 zero> {
      shape = Shape (x)
      t = Gather <axis=0> (shape, one)
      positions = Range (zero, t, one)
      e = Gather (pos, positions)
      y = Add (x, e)
    }""", one=np.array(1), zero=np.array(0))
    assert op.ChannelAxis("positions", 0) in dg.nonchannel


def test_rmsnormalization_is_inexact_and_labelled():
    dg = analyse(header(23, 10) + """
    agraph (float[N,T,4] x) => (float[N,T,3] y) <float[4,6] w1, float[6] g, float[6,3] w2> {
      h = MatMul (x, w1)
      n = RMSNormalization <axis=-1> (h, g)
      y = MatMul (n, w2)
    }""")
    g = group_of(dg, "w1", 1)
    assert g.labels == {"normalized"} and not g.exact and ("g", 0) in member_axes(g)
    check_all_prunable(dg, expect=1)


def test_decomposed_rmsnorm_labels_the_hidden_group():
    dg = analyse(header(17) + """
    agraph (float[N,T,4] x) => (float[N,T,3] y) <float[4,6] w1, float[6] g, float[6,3] w2, float two, float e> {
      h = MatMul (x, w1)
      sq = Pow (h, two)
      ms = ReduceMean <axes=[-1]> (sq)
      eps = Add (ms, e)
      rs = Sqrt (eps)
      inv = Reciprocal (rs)
      hn = Mul (h, inv)
      n = Mul (g, hn)
      y = MatMul (n, w2)
    }""", two=np.array(2.0, np.float32), e=np.array(1e-6, np.float32))
    g = group_of(dg, "w1", 1)
    assert g.labels == {"normalized"} and not g.exact
    check_all_prunable(dg, expect=1)


def test_torchscript_expand_minus_one_and_flatten_of_shape_slice():
    """cls.expand(Shape(x)[0], -1, -1) is Where(Equal(s, -1), 1, s); flatten(2) is Concat(Slice(Shape(c), 0, 2),
    -1): both shapes resolve, so the concatenated class token keeps the channel group prunable. (The loader infers
    shapes once more after folding, here the Constant node, as in every export.)"""
    dg = analyse(header(17) + """
    agraph (float[N,3,4,4] img) => (float[N,5,2] y) <float[8,3,2,2] wc, float[1,1,8] cls, float[8,2] w2,
                                                     int64 zero, int64[1] zero1, int64[1] two1, int64[3] ones> {
      minus1 = Constant <value = int64[1] {-1}> ()
      c = Conv <strides=[2,2]> (img, wc)
      sc = Shape (c)
      head = Slice (sc, zero1, two1)
      target = Concat <axis=0> (head, minus1)
      f = Reshape (c, target)
      t = Transpose <perm=[0,2,1]> (f)
      st = Shape (t)
      n = Gather <axis=0> (st, zero)
      nu = Unsqueeze (n, zero1)
      s = Concat <axis=0> (nu, minus1, minus1)
      is_keep = Equal (s, minus1)
      ex_shape = Where (is_keep, ones, s)
      e = Expand (cls, ex_shape)
      x = Concat <axis=1> (e, t)
      y = MatMul (x, w2)
    }""", zero=np.array(0), zero1=np.array([0]), two1=np.array([2]), ones=np.ones(3, np.int64))
    g = group_of(dg, "wc", 0)
    assert g.prunable and {("cls", 2), ("e", 2), ("x", 2), ("w2", 0)} <= member_axes(g)
    assert dg.tensors["e"].shape[1:] == [1, 8] and dg.tensors["f"].shape[1:] == [8, 4]
    check_all_prunable(dg, expect=1)


def test_gemm_on_merged_batch_and_sequence_dims():
    """GPT-2's Conv1D: [B, T, C] -> [B*T, C] (target [-1, C]), Gemm, then back to [B, T, C']."""
    dg = analyse(header(17) + """
    agraph (float[N,T,4] x) => (float[N,T,3] y) <float[4,6] w1, float[6] b1, float[6,3] w2, int64[1] zero1,
                                                 int64[1] two1, int64[2] minus1_4, int64[1] six> {
      s = Shape (x)
      bt = Slice (s, zero1, two1)
      flat = Reshape (x, minus1_4)
      h = Gemm (flat, w1, b1)
      back = Concat <axis=0> (bt, six)
      h3 = Reshape (h, back)
      r = Relu (h3)
      y = MatMul (r, w2)
    }""", zero1=np.array([0]), two1=np.array([2]), minus1_4=np.array([-1, 4]), six=np.array([6]))
    g = group_of(dg, "w1", 1)
    assert member_axes(g) == {("w1", 1), ("b1", 0), ("h", 1), ("h3", 2), ("r", 2), ("w2", 0)}
    check_all_prunable(dg, expect=1)


def test_reshape_target_shared_by_two_layers_is_rewritten_per_layer():
    """The dynamo exporter shares one target Concat between layers: pruning one layer's heads must not change the
    other's target."""
    dg = analyse(header(17) + """
    agraph (float[N,T,8] x) => (float[N,T,8] y) <float[8,8] w1, float[8,8] w2, float[8,8] w3, float[8,8] w4,
                                                 int64[1] zero1, int64[1] two1, int64[1] heads, int64[1] hd,
                                                 int64[1] width> {
      s = Shape (x)
      bt = Slice (s, zero1, two1)
      target = Concat <axis=0> (bt, heads, hd)
      back = Concat <axis=0> (bt, width)
      a = MatMul (x, w1)
      a4 = Reshape (a, target)
      a2 = Reshape (a4, back)
      b = MatMul (a2, w2)
      c = MatMul (b, w3)
      c4 = Reshape (c, target)
      c2 = Reshape (c4, back)
      y = MatMul (c2, w4)
    }""", zero1=np.array([0]), two1=np.array([2]), heads=np.array([2]), hd=np.array([4]), width=np.array([8]),
        options=op.AnalysisOptions(factor_policy="leading"))
    g = group_of(dg, "w1", 1)
    assert g.size == 2
    model, passed = prune_and_compare(dg, g.id, [0])
    assert passed and initializer(model, "w1").shape == (8, 4) and initializer(model, "w3").shape == (8, 8)


def test_matmul_macs_count_a_dynamic_contraction_as_one():
    from onnxprune.analysis.stats import count_macs

    dg = analyse(header() + """
    agraph (float[N,4,T,8] q, float[N,4,8,T] k, float[N,4,T,T] p, float[N,4,T,8] v) => (float[N,4,T,T] s,
                                                                                      float[N,4,T,8] c) {
      s = MatMul (q, k)
      c = MatMul (p, v)
    }""")
    assert count_macs(dg.graph) == 4 * 8 + 4 * 8
