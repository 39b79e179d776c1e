"""Shape, Size, ConstantOfShape, Expand and Gather handlers: sizes held in shape tensors are rewritten, fixed
gathers block, embedding tables produce channels."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.checked import checked_prune
from tests.support.handlers_util import (
    analyse,
    check_all_prunable,
    group_of,
    header,
    initializer,
    member_axes,
    prune_and_compare,
    table,
)


def test_gather_embedding_columns_are_channels():
    dg = analyse(header() + """
    agraph (int64[N,T] ids) => (float[N,T,3] y) <float[16,6] emb, float[6,3] w> {
      e = Gather (emb, ids)
      y = MatMul (e, w)
    }""")
    g = group_of(dg, "emb", 1)
    assert g.root == ("emb", 1) and member_axes(g) == {("emb", 1), ("e", 2), ("w", 0)}
    assert not dg.group_of("emb", 0)  # rows are looked up, never channels
    check_all_prunable(dg, expect=1)
    assert initializer(checked_prune(dg, {g.id: [2, 4]}).model, "emb").shape == (16, 4)


def test_gather_of_fixed_channels_blocks():
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[6,3,1,1] w, int64[3] idx, float[2,3,1,1] w2> {
      h = Conv (x, w)
      s = Gather <axis=1> (h, idx)
      y = Conv (s, w2)
    }""", idx=np.array([0, 2, 5]))
    g = group_of(dg, "w", 0)
    assert not g.prunable and any("selects fixed indices" in r for r in g.blocked_reasons)


def test_gather_of_one_position_keeps_the_channel():
    dg = analyse(header() + """
    agraph (float[N,3,8] x) => (float[N,2] y) <float[6,3,1] w, int64 pos, float[6,2] w2> {
      h = Conv (x, w)
      s = Gather <axis=2> (h, pos)
      y = MatMul (s, w2)
    }""", pos=np.array(-1))
    g = group_of(dg, "w", 0)
    assert member_axes(g) == {("w", 0), ("h", 1), ("s", 1), ("w2", 0)}
    check_all_prunable(dg, expect=1)


@pytest.mark.parametrize("source,target,expect", [
    ("float[N,1,8,8] src", [1, 4, 1, 1], [1, 3, 1, 1]),  # Expand creates the channel axis: its size is rewritten
    ("float[N,1,8,8] src", [4, 1, 1], [3, 1, 1]),  # a shorter shape aligns to the right
    ("", [1, 4, 8, 8], [1, 3, 8, 8]),  # Expand keeps a pruned axis: the target must follow it
])
def test_expand_sizes_are_rewritten(source, target, expect):
    inputs = "float[N,3,8,8] x" + (f", {source}" if source else "")
    pooled = "" if source else "src = GlobalAveragePool (h)"
    dg = analyse(header() + f"""
    agraph ({inputs}) => (float[N,2,8,8] y) <float[4,3,1,1] w, float[2,4,1,1] w2, int64[{len(target)}] shape> {{
      h = Conv (x, w)
      {pooled}
      e = Expand (src, shape)
      s = Add (h, e)
      y = Conv (s, w2)
    }}""", shape=np.array(target))
    g = group_of(dg, "w", 0)
    assert ("e", 1) in g.members and (("src", 1) in g.members) == (not source)
    check_all_prunable(dg, expect=1)
    assert initializer(checked_prune(dg, {g.id: [0]}).model, "shape").tolist() == expect


def test_constant_of_shape_with_a_dynamic_batch_is_rewritten_at_its_constant():
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[4,3,1,1] w, float[2,4,1,1] w2, int64[3] chw> {
      h = Conv (x, w)
      n = Shape <end=1> (x)
      t = Concat <axis=0> (n, chw)
      z = ConstantOfShape <value=float[1] {0.5}> (t)
      s = Add (h, z)
      y = Conv (s, w2)
    }""", chw=np.array([4, 8, 8]))
    g = group_of(dg, "w", 0)
    assert ("z", 1) in g.members
    check_all_prunable(dg, expect=1)
    assert initializer(checked_prune(dg, {g.id: [1, 2]}).model, "chw").tolist() == [2, 8, 8]


@pytest.mark.parametrize("rest", [16, -1])
def test_shape_of_a_pruned_tensor_follows_it_at_run_time(rest):
    # Flatten with a dynamic batch as exporters write it: Reshape(h, Concat(Unsqueeze(Shape(h)[0]), [rest]))
    dg = analyse(header() + """
    agraph (float[N,3,2,2] x) => (float[N,5] y) <float[4,3,1,1] w, int64 zero, int64[1] ax, int64[1] rest,
                                                 float[16,5] fc> {
      h = Conv (x, w)
      s = Shape (h)
      n = Gather (s, zero)
      u = Unsqueeze (n, ax)
      t = Concat <axis=0> (u, rest)
      f = Reshape (h, t)
      y = MatMul (f, fc)
    }""", zero=np.array(0), ax=np.array([0]), rest=np.array([rest]))
    g = group_of(dg, "w", 0)
    assert table(g, "fc", 0) == [[4 * c, 4 * c + 1, 4 * c + 2, 4 * c + 3] for c in range(4)]
    check_all_prunable(dg, expect=1)
    if rest != -1:
        assert initializer(checked_prune(dg, {g.id: [0]}).model, "rest").tolist() == [12]


def test_size_of_a_channel_axis_makes_the_group_inexact():
    # a hand-written mean: ReduceSum over channels / Size; the count changes with the channels
    dg = analyse(header() + """
    agraph (float[N,3,4,4] x) => (float[N,1,4,4] y) <float[5,3,1,1] w, int64[1] ax> {
      h = Conv (x, w)
      r = ReduceSum <keepdims=1> (h, ax)
      n = Size (h)
      c = Cast <to=1> (n)
      y = Div (r, c)
    }""", ax=np.array([1]))
    g = group_of(dg, "w", 0)
    assert g.prunable
    _, passed = prune_and_compare(dg, g.id, [1])
    assert passed == g.exact and not g.exact
