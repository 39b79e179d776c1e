"""Transpose, Flatten, Squeeze/Unsqueeze and Reshape handlers: expansion maps, factoring, shape rewriting."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxprune as op
from tests.support.checked import checked_prune
from tests.support.handlers_util import (
    analyse,
    check_all_prunable,
    group_of,
    header,
    initializer,
    member_axes,
    output_shapes,
    table,
)


def test_flatten_expands_channel_c_to_features_c_times_hw():
    dg = analyse(header() + """
    agraph (float[N,3,3,3] x) => (float[N,5] y) <float[3,3,3,3] w, float[5,27] fc, float[5] fb> {
      h = Conv <pads=[1,1,1,1]> (x, w)
      f = Flatten <axis=1> (h)
      y = Gemm <transB=1> (f, fc, fb)
    }""")
    g = group_of(dg, "w", 0)
    assert table(g, "fc", 1) == [list(range(c * 9, c * 9 + 9)) for c in range(3)]
    assert table(g, "f", 1) == table(g, "fc", 1)
    check_all_prunable(dg, expect=1)
    model = checked_prune(dg, {g.id: [1]}).model
    assert initializer(model, "fc").shape == (5, 18)


def test_reshape_with_static_target_is_rewritten():
    dg = analyse(header() + """
    agraph (float[2,3,4,4] x) => (float[2,5] y) <float[6,3,1,1] w, float[24,5] fc, int64[2] target> {
      h = Conv <strides=[2,2]> (x, w)
      f = Reshape (h, target)
      y = MatMul (f, fc)
    }""", target=np.array([2, 24]))
    g = group_of(dg, "w", 0)
    assert table(g, "fc", 0) == [[4 * c, 4 * c + 1, 4 * c + 2, 4 * c + 3] for c in range(6)]
    check_all_prunable(dg, expect=1)
    model = checked_prune(dg, {g.id: [0, 5]}).model
    assert initializer(model, "target").tolist() == [2, 16]


def test_reshape_target_built_from_a_shape_subgraph_is_rewritten_at_its_constant():
    # dynamic batch: target = Concat(Shape(h)[0:1], [24]); the 24 lives in a constant that must become 16
    dg = analyse(header() + """
    agraph (float[N,3,4,4] x) => (float[N,5] y) <float[6,3,1,1] w, float[24,5] fc, int64[1] feat> {
      h = Conv <strides=[2,2]> (x, w)
      s = Shape <end=1> (h)
      t = Concat <axis=0> (s, feat)
      f = Reshape (h, t)
      y = MatMul (f, fc)
    }""", feat=np.array([24]))
    g = group_of(dg, "w", 0)
    assert len(table(g, "fc", 0)[0]) == 4
    check_all_prunable(dg, expect=1)
    model = checked_prune(dg, {g.id: [0, 5]}).model
    assert initializer(model, "feat").tolist() == [16]


def test_channel_shuffle_couples_channel_b_of_both_halves():
    dg = analyse(header() + """
    agraph (float[N,3,4,4] x) => (float[N,2,4,4] y) <float[8,3,1,1] w, float[2,8,1,1] w2, int64[5] split,
                                                     int64[4] merge> {
      h = Conv (x, w)
      r = Reshape (h, split)
      t = Transpose <perm=[0,2,1,3,4]> (r)
      s = Reshape (t, merge)
      y = Conv (s, w2)
    }""", split=np.array([0, 2, 4, 4, 4]), merge=np.array([0, 8, 4, 4]))
    g = group_of(dg, "w", 0)
    assert g.size == 4
    assert table(g, "w", 0) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert table(g, "r", 2) == [[0], [1], [2], [3]]
    assert table(g, "w2", 1) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert not any(("r", 1) in x.members and x.prunable for x in dg.groups)  # the factor 2 keeps its size
    check_all_prunable(dg, expect=1)
    model = checked_prune(dg, {g.id: [1]}).model
    assert initializer(model, "split").tolist() == [0, 2, 3, 4, 4]
    assert initializer(model, "merge").tolist() == [0, 6, 4, 4]


@pytest.mark.parametrize("policy,size,row0", [("largest", 16, [0, 16]), ("leading", 2, list(range(16))),
                                              ("trailing", 16, [0, 16])])
def test_reshape_into_heads_follows_the_factor_policy(policy, size, row0):
    dg = analyse(header() + """
    agraph (float[N,T,8] x) => (float[N,2,T,16] y) <float[8,32] wq, int64[4] heads> {
      q = MatMul (x, wq)
      h = Reshape (q, heads)
      y = Transpose <perm=[0,2,1,3]> (h)
    }""", heads=np.array([0, 0, 2, 16]), options=op.AnalysisOptions(factor_policy=policy))
    g = group_of(dg, "wq", 1)
    assert g.size == size and table(g, "wq", 1)[0] == row0
    assert ("y", 3 if policy != "leading" else 1) in member_axes(g)


def test_attention_prunes_the_same_position_in_every_head():
    dg = analyse(header() + """
    agraph (float[N,T,8] x) => (float[N,T,8] y) <float[8,32] wq, float[8,32] wk, float[8,32] wv, float[32,8] wo,
                                                 int64[4] heads, int64[3] merge> {
      q = MatMul (x, wq)
      k = MatMul (x, wk)
      v = MatMul (x, wv)
      qh = Reshape (q, heads)
      kh = Reshape (k, heads)
      vh = Reshape (v, heads)
      qt = Transpose <perm=[0,2,1,3]> (qh)
      kt = Transpose <perm=[0,2,3,1]> (kh)
      vt = Transpose <perm=[0,2,1,3]> (vh)
      s = MatMul (qt, kt)
      p = Softmax <axis=-1> (s)
      o = MatMul (p, vt)
      ot = Transpose <perm=[0,2,1,3]> (o)
      om = Reshape (ot, merge)
      y = MatMul (om, wo)
    }""", heads=np.array([0, 0, 2, 16]), merge=np.array([0, 0, 32]))
    qk, vo = group_of(dg, "wq", 1), group_of(dg, "wv", 1)
    assert qk.size == vo.size == 16 and qk is group_of(dg, "wk", 1) and vo is group_of(dg, "wo", 0)
    assert table(qk, "wq", 1)[3] == [3, 19] and table(vo, "wo", 0)[3] == [3, 19]
    check_all_prunable(dg, expect=2)
    model = checked_prune(dg, {qk.id: [0, 5], vo.id: [1]}).model
    targets = sorted(onnx.numpy_helper.to_array(t).tolist() for t in model.graph.initializer
                     if t.name.startswith("heads"))
    assert targets == [[0, 0, 2, 14], [0, 0, 2, 14], [0, 0, 2, 15]]  # one private copy per Reshape
    assert initializer(model, "merge").tolist() == [0, 0, 30]


def test_transpose_moves_the_channel_axis():
    dg = analyse(header() + """
    agraph (float[N,4,4,3] x) => (float[N,4,4,2] y) <float[3,5] w1, float[5,2] w2> {
      a = MatMul (x, w1)
      t = Transpose <perm=[0,3,1,2]> (a)
      r = Relu (t)
      b = Transpose <perm=[0,2,3,1]> (r)
      y = MatMul (b, w2)
    }""")
    g = group_of(dg, "w1", 1)
    assert member_axes(g) == {("w1", 1), ("a", 3), ("t", 1), ("r", 1), ("b", 3), ("w2", 0)}
    check_all_prunable(dg, expect=1)


@pytest.mark.parametrize("opset,squeeze,unsqueeze,consts", [
    (11, "Squeeze <axes=[2, 3]> (p)", "Unsqueeze <axes=[2]> (l)", {}),
    (13, "Squeeze (p, sq)", "Unsqueeze (l, uq)", {"sq": np.array([2, 3]), "uq": np.array([2])}),
])
def test_squeeze_unsqueeze_axes_attribute_and_input(opset, squeeze, unsqueeze, consts):
    decl = ", int64[2] sq, int64[1] uq" if consts else ""
    dg = analyse(header(opset) + f"""
    agraph (float[N,3,4,4] x) => (float[N,2,1] y) <float[6,3,1,1] w, float[6,5] fc, float[2,5,1] w2{decl}> {{
      h = Conv (x, w)
      p = GlobalAveragePool (h)
      s = {squeeze}
      l = MatMul (s, fc)
      u = {unsqueeze}
      y = Conv (u, w2)
    }}""", **consts)
    g = group_of(dg, "w", 0)
    assert member_axes(g) >= {("p", 1), ("s", 1), ("fc", 0)}
    g2 = group_of(dg, "fc", 1)
    assert member_axes(g2) == {("fc", 1), ("l", 1), ("u", 1), ("w2", 1)}
    check_all_prunable(dg, expect=2)


@pytest.mark.parametrize("target,out,reason", [
    ([0, 4, 6, 4], ["N", 4, 6, 4], "regroups dims [6, 4] into [4, 6]"),  # channels mixed with a spatial axis
    ([-1, 4, 4, 4], [None, 4, 4, 4], "merges this axis with dynamic"),  # channels moved into the dynamic batch axis
])
def test_reshape_that_mixes_axes_blocks(target, out, reason):
    dg = analyse(header() + """
    agraph (float[N,6,4,4] x) => (float[M,2,H,W] y) <float[6,6,1,1] w, float[2,4,1,1] w2, int64[4] target> {
      h = Conv (x, w)
      r = Reshape (h, target)
      y = Conv (r, w2)
    }""", target=np.array(target))
    g = group_of(dg, "w", 0)
    assert not g.prunable and not dg.prunable_groups()
    assert any(reason in r and "Reshape node" in r for r in g.blocked_reasons), g.blocked_reasons
    shape = output_shapes(op.masked_model(dg, {}).proto)["r"]
    assert shape[1:] == out[1:]
