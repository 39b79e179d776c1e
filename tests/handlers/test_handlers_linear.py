"""Gemm and MatMul handlers: contraction couplings under transA/transB, biases, weights on either side."""

from __future__ import annotations

import pytest

from tests.support.checked import checked_prune
from tests.support.handlers_util import analyse, check_all_prunable, group_of, header, initializer, member_axes, table


@pytest.mark.parametrize("trans_b,w1_shape,k_axis,n_axis", [(0, "4,6", 0, 1), (1, "6,4", 1, 0)])
@pytest.mark.parametrize("bias", ["6", "1,6"])
def test_gemm_trans_b_picks_the_weight_axes(trans_b, w1_shape, k_axis, n_axis, bias):
    dg = analyse(header() + f"""
    agraph (float[N,4] x) => (float[N,3] y) <float[{w1_shape}] w1, float[{bias}] b1, float[6,3] w2> {{
      h = Gemm <transB={trans_b}, alpha=0.5, beta=2.0> (x, w1, b1)
      r = Relu (h)
      y = Gemm (r, w2)
    }}""")
    g = group_of(dg, "w1", n_axis)
    assert g.root == ("w1", n_axis) and g.size == 6
    assert member_axes(g) == {("w1", n_axis), ("b1", len(bias.split(",")) - 1), ("h", 1), ("r", 1), ("w2", 0)}
    assert not group_of(dg, "w1", k_axis).prunable  # coupled with the graph input's features
    check_all_prunable(dg, expect=1)
    model = checked_prune(dg, {g.id: [0, 5]}).model
    assert initializer(model, "w1").shape[n_axis] == 4 and initializer(model, "w2").shape == (4, 3)


def test_gemm_trans_a_contracts_the_activation_rows():
    # A' = A^T: a's axis 0 is contracted with w2's rows, a's axis 1 becomes Y's rows (a batch-like axis)
    dg = analyse(header() + """
    agraph (float[2,4] x) => (float[5,3] y) <float[4,5] w1, float[2,3] w2> {
      a = MatMul (x, w1)
      y = Gemm <transA=1> (a, w2)
    }""")
    by_axis = {ax: g for g in dg.groups for ax in g.members}
    assert by_axis[("a", 0)] is by_axis[("w2", 0)] is by_axis[("x", 0)]
    rows = by_axis[("a", 1)]
    assert rows.kind == "nonchannel" and member_axes(rows) == {("w1", 1), ("a", 1), ("y", 0)}
    assert member_axes(group_of(dg, "w2", 1)) == {("w2", 1), ("y", 1)}


def test_gemm_trans_a_on_a_constant_makes_its_columns_channels():
    dg = analyse(header() + """
    agraph (float[4,2] x) => (float[3,2] y) <float[4,5] wa, float[3,5] w2> {
      h = Gemm <transA=1> (wa, x)
      r = Tanh (h)
      y = MatMul (w2, r)
    }""")
    g = group_of(dg, "wa", 1)
    assert g.root == ("wa", 1) and member_axes(g) == {("wa", 1), ("h", 0), ("r", 0), ("w2", 1)}
    check_all_prunable(dg, expect=1)


def test_matmul_batched_activation_with_weight_on_the_right():
    dg = analyse(header() + """
    agraph (float[N,T,4] x) => (float[N,T,3] y) <float[4,6] w1, float[6] b1, float[6,3] w2> {
      h = MatMul (x, w1)
      hb = Add (h, b1)
      r = Relu (hb)
      y = MatMul (r, w2)
    }""")
    g = group_of(dg, "w1", 1)
    assert member_axes(g) == {("w1", 1), ("h", 2), ("b1", 0), ("hb", 2), ("r", 2), ("w2", 0)}
    assert table(g, "w2", 0) == [[i] for i in range(6)]
    check_all_prunable(dg, expect=1)


def test_matmul_weight_on_the_left_produces_rows():
    # W[O, K] @ X[N, K, T]: W's rows are output channels (as some converters write a 1x1 conv)
    dg = analyse(header() + """
    agraph (float[N,4,T] x) => (float[N,3,T] y) <float[6,4] w1, float[6,1] b1, float[3,6] w2> {
      h = MatMul (w1, x)
      hb = Add (h, b1)
      y = MatMul (w2, hb)
    }""")
    g = group_of(dg, "w1", 0)
    assert g.root == ("w1", 0)
    assert member_axes(g) == {("w1", 0), ("h", 1), ("b1", 0), ("hb", 1), ("w2", 1)}
    check_all_prunable(dg, expect=1)


def test_matmul_of_two_activations_couples_the_shared_axis():
    # attention-like: scores = Q @ K^T contracts the head dim, so Q's and K's projections prune together
    dg = analyse(header() + """
    agraph (float[N,T,4] x) => (float[N,T,T] y) <float[4,6] wq, float[4,6] wk> {
      q = MatMul (x, wq)
      k = MatMul (x, wk)
      kt = Transpose <perm=[0,2,1]> (k)
      y = MatMul (q, kt)
    }""")
    g = group_of(dg, "wq", 1)
    assert member_axes(g) == {("wq", 1), ("q", 2), ("wk", 1), ("k", 2), ("kt", 1)}
    check_all_prunable(dg, expect=1)


def test_matmul_with_a_1d_weight_vector():
    dg = analyse(header() + """
    agraph (float[N,4] x) => (float[N] y) <float[4,6] w1, float[6] v> {
      h = MatMul (x, w1)
      y = MatMul (h, v)
    }""")
    g = group_of(dg, "w1", 1)
    assert member_axes(g) == {("w1", 1), ("h", 1), ("v", 0)}
    check_all_prunable(dg, expect=1)


def test_gemm_bias_with_a_row_per_batch_item():
    dg = analyse(header() + """
    agraph (float[2,4] x) => (float[2,3] y) <float[4,6] w1, float[2,6] c1, float[6,3] w2> {
      h = Gemm (x, w1, c1)
      y = Gemm (h, w2)
    }""")
    g = group_of(dg, "w1", 1)
    assert table(g, "c1", 1) == [[i] for i in range(6)]
    check_all_prunable(dg, expect=1)
    assert initializer(checked_prune(dg, {g.id: [1]}).model, "c1").shape == (2, 5)
