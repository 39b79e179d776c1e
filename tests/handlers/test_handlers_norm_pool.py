"""Normalisation, pooling and reduction handlers: per-channel params, GroupNorm granularity, inexact groups."""

from __future__ import annotations

import numpy as np
import pytest
from onnxprune.op_handlers.pooling import OTHER_REDUCE, POOLS, SUM_LIKE

import onnxprune as op
from tests.support.checked import checked_prune
from tests.support.handlers_util import (
    analyse,
    attribute,
    check_all_prunable,
    group_of,
    header,
    initializer,
    make_model,
    member_axes,
    prune_and_compare,
    table,
)

CONV_IN = "float[N,3,8,8] x"


def test_batchnorm_params_follow_the_channel():
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[4,3,1,1] w, float[4] sc, float[4] bi, float[4] mu,
                                                     float[4] var, float[2,4,1,1] w2> {
      h = Conv (x, w)
      n = BatchNormalization <epsilon=0.001> (h, sc, bi, mu, var)
      y = Conv (n, w2)
    }""")
    g = group_of(dg, "w", 0)
    assert member_axes(g) == {("w", 0), ("h", 1), ("sc", 0), ("bi", 0), ("mu", 0), ("var", 0), ("n", 1), ("w2", 1)}
    check_all_prunable(dg, expect=1)


def test_instance_norm_is_per_channel_and_exact():
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[4,3,1,1] w, float[4] sc, float[4] bi,
                                                     float[2,4,1,1] w2> {
      h = Conv (x, w)
      n = InstanceNormalization (h, sc, bi)
      y = Conv (n, w2)
    }""")
    g = group_of(dg, "w", 0)
    assert g.exact and member_axes(g) >= {("sc", 0), ("bi", 0), ("n", 1)}
    check_all_prunable(dg, expect=1)


@pytest.mark.parametrize("opset,ir,param", [(18, 8, 4), (21, 10, 8)])
def test_group_norm_removes_whole_groups(opset, ir, param):
    # ONNX shape inference cannot infer GroupNormalization: its output shape comes from the model's value_info
    dg = analyse(header(opset, ir) + f"""
    agraph (float[N,3,4,4] x) => (float[N,2,4,4] y) <float[8,3,1,1] w, float[{param}] sc, float[{param}] bi,
                                                     float[2,8,1,1] w2, float[N,8,4,4] n> {{
      h = Conv (x, w)
      n = GroupNormalization <num_groups=4> (h, sc, bi)
      y = Conv (n, w2)
    }}""")
    g = group_of(dg, "w", 0)
    assert g.size == 4 and g.exact
    assert table(g, "w", 0) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert table(g, "sc", 0) == ([[0], [1], [2], [3]] if param == 4 else [[0, 1], [2, 3], [4, 5], [6, 7]])
    # onnx.checker rejects GroupNormalization-18 (deprecated) even in the original model: that error is excused
    # because the original has it too, and onnxruntime must still load the result
    check_all_prunable(dg, expect=1)
    model = checked_prune(dg, {g.id: [1, 2]}).model
    assert attribute(model, "GroupNormalization", "num_groups") == 2
    assert initializer(model, "sc").shape == (param // 2,)


def test_recorded_shapes_give_way_to_new_input_shapes():
    model = make_model(header() + """
    agraph (float[1,3,4,4] x) => (float[B,2,4,4] y) <float[8,3,1,1] w, float[2,8,1,1] w2, float[1,8,4,4] h> {
      h = Conv (x, w)
      y = Conv (h, w2)
    }""")
    assert op.analyse_model(model).tensors["h"].shape == [1, 8, 4, 4]
    assert op.analyse_model(model, input_shapes={"x": [4, 3, 4, 4]}).tensors["h"].shape == [4, 8, 4, 4]


@pytest.mark.parametrize("axis", [-1, 1])
def test_layer_norm_over_channels_is_not_exact(axis):
    dg = analyse(header(17) + f"""
    agraph (float[N,T,4] x) => (float[N,T,3] y) <float[4,6] w1, float[6] g, float[6] b, float[6,3] w2> {{
      h = MatMul (x, w1)
      n = LayerNormalization <axis={axis}> (h, g, b)
      y = MatMul (n, w2)
    }}""")
    g = group_of(dg, "w1", 1)
    assert member_axes(g) == {("w1", 1), ("h", 2), ("g", 0), ("b", 0), ("n", 2), ("w2", 0)}
    assert not g.exact and any("LayerNormalization" in r for r in g.inexact_reasons)
    check_all_prunable(dg, expect=1)  # prunes and checks the pruned model; asserts the oracle does NOT match
    assert ("h", 1) not in g.members


@pytest.mark.parametrize("pool", POOLS)
def test_pools_keep_the_channel_axis(pool):
    if pool == "MaxRoiPool":
        extra, line = ", float[2,5] rois", "p = MaxRoiPool <pooled_shape=[2,2]> (h, rois)"
        consts = {"rois": np.array([[0, 0, 0, 3, 3], [0, 2, 2, 7, 7]])}
    else:
        window = "" if pool.startswith("Global") else "<kernel_shape=[2,2], strides=[2,2]>"
        extra, line, consts = "", f"p = {pool} {window} (h)", {}
    batch = "2" if pool == "MaxRoiPool" else "N"
    dg = analyse(header() + f"""
    agraph (float[{batch},3,8,8] x) => (float[M,2,H,W] y) <float[4,3,1,1] w, float[2,4,1,1] w2{extra}> {{
      h = Conv (x, w)
      {line}
      y = Conv (p, w2)
    }}""", **consts)
    g = group_of(dg, "w", 0)
    assert member_axes(g) == {("w", 0), ("h", 1), ("p", 1), ("w2", 1)} and g.exact
    check_all_prunable(dg, expect=1)


def test_max_pool_indices_output_depends_on_the_channel_count():
    # Indices are flat positions ((n * C + c) * H + h) * W + w: pruning a channel shifts the other channels' values
    dg = analyse(header(13) + """
    agraph (float[N,3,8,8] x) => (float[N,2,4,4] y, float[N,1,4,4] z) <float[4,3,1,1] w, float[2,4,1,1] w2,
                                                                       int64[1] ax> {
      h = Conv (x, w)
      p, i = MaxPool <kernel_shape=[2,2], strides=[2,2]> (h)
      y = Conv (p, w2)
      f = Cast <to=1> (i)
      z = ReduceSum <keepdims=1> (f, ax)
    }""", ax=np.array([1]))
    g = group_of(dg, "w", 0)
    assert ("i", 1) in g.members and not g.prunable
    assert any("Indices output encodes the channel count" in r for r in g.blocked_reasons)


REDUCTIONS = SUM_LIKE + OTHER_REDUCE


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reductions_over_spatial_axes_keep_the_channel(reduce, opset, keepdims):
    as_input = opset >= 18 or reduce == "ReduceSum"
    call = f"{reduce} <keepdims={keepdims}> (s, axes)" if as_input else \
        f"{reduce} <keepdims={keepdims}, axes=[2, -1]> (s)"
    tail = "y = Gemm <transB=1> (r, w2)" if not keepdims else "y = Conv (r, w2c)"
    dg = analyse(header(opset) + f"""
    agraph (float[N,3,4,4] x) => (float[N,2{',1,1' if keepdims else ''}] y) <float[5,3,1,1] w, float[2,5] w2,
                                                 float[2,5,1,1] w2c, int64[2] axes> {{
      h = Conv (x, w)
      s = Sigmoid (h)
      r = {call}
      {tail}
    }}""", axes=np.array([2, -1]))
    g = group_of(dg, "w", 0)
    assert ("r", 1) in g.members and g.exact
    assert table(g, "w2" if not keepdims else "w2c", 1) == [[i] for i in range(5)]
    check_all_prunable(dg, expect=1)


@pytest.mark.parametrize("reduce,exact", [("ReduceSum", True), ("ReduceL2", True), ("ReduceMean", False),
                                          ("ReduceMax", False), ("ReduceLogSumExp", False)])
def test_reduction_over_channels_exact_only_for_sums(reduce, exact):
    dg = analyse(header(18) + f"""
    agraph (float[N,3,4,4] x) => (float[N,1,4,4] y) <float[5,3,1,1] w, int64[1] axes> {{
      h = Conv (x, w)
      s = Sigmoid (h)
      n = Neg (s)
      y = {reduce} <keepdims=1> (n, axes)
    }}""", axes=np.array([1]))
    g = group_of(dg, "w", 0)
    assert member_axes(g) == {("w", 0), ("h", 1), ("s", 1), ("n", 1)}
    assert g.prunable and g.exact == exact
    _, passed = prune_and_compare(dg, g.id, [1, 3])
    assert passed == exact


def test_reduce_with_no_axes_reduces_everything_unless_noop():
    dg = analyse(header(18) + """
    agraph (float[N,3,4,4] x) => (float[N,2,4,4] y) <float[5,3,1,1] w, float[2,5,1,1] w2> {
      h = Conv (x, w)
      m = ReduceMax <noop_with_empty_axes=1> (h)
      y = Conv (m, w2)
    }""")
    g = group_of(dg, "w", 0)
    assert ("m", 1) in g.members and g.exact
    check_all_prunable(dg, expect=1)


@pytest.mark.parametrize("op_type", ["ArgMax", "ArgMin"])
def test_argmax_over_a_spatial_axis_keeps_channels(op_type):
    dg = analyse(header(13) + f"""
    agraph (float[N,3,8] x) => (float[N,2] y) <float[5,3,1] w, float[2,5] w2> {{
      h = Conv (x, w)
      a = {op_type} <axis=2, keepdims=0> (h)
      f = Cast <to=1> (a)
      y = Gemm <transB=1> (f, w2)
    }}""")
    g = group_of(dg, "w", 0)
    assert member_axes(g) == {("w", 0), ("h", 1), ("a", 1), ("f", 1), ("w2", 1)}
    check_all_prunable(dg, expect=1)


def test_argmax_over_the_class_axis_blocks():
    # the result indexes the axis: removing a class would renumber the others
    dg = analyse(header(13) + """
    agraph (float[N,4] x) => (int64[N] y) <float[4,6] w1, float[6,5] w2> {
      h = MatMul (x, w1)
      l = MatMul (h, w2)
      y = ArgMax <axis=1, keepdims=0> (l)
    }""")
    g = group_of(dg, "w2", 1)
    assert not g.prunable and any("ArgMax node" in r and "returns positions" in r for r in g.blocked_reasons)
    check_all_prunable(dg, expect=1)


def test_layer_norm_mean_and_inv_std_outputs_follow_the_rows():
    dg = analyse(header(17) + """
    agraph (float[N,T,4] x) => (float[N,T,3] y, float[N,T,1] m) <float[4,6] w1, float[6] g, float[6,3] w2> {
      h = MatMul (x, w1)
      n, m, v = LayerNormalization <axis=-1> (h, g)
      y = MatMul (n, w2)
    }""")
    g = group_of(dg, "w1", 1)
    assert ("m", 2) not in g.members and not g.exact
    check_all_prunable(dg, expect=1)
