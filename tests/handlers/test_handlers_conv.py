"""Conv and ConvTranspose handlers: plain, grouped (uniform within-group pruning) and depthwise (whole groups,
``group`` rewritten)."""

from __future__ import annotations

from tests.support.checked import checked_prune
from tests.support.handlers_util import (
    analyse,
    attribute,
    check_all_prunable,
    group_of,
    header,
    initializer,
    member_axes,
    table,
)


def test_conv_chain_couples_weight_rows_bias_and_next_columns():
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x) => (float[N,5,8,8] y) <float[4,3,3,3] w, float[4] b, float[5,4,1,1] w2> {
      h = Conv <pads=[1,1,1,1]> (x, w, b)
      r = Relu(h)
      y = Conv (r, w2)
    }""")
    g = group_of(dg, "w", 0)
    assert g.root == ("w", 0) and g.size == 4 and g.prunable and g.exact
    assert member_axes(g) == {("w", 0), ("b", 0), ("h", 1), ("r", 1), ("w2", 1)}
    assert table(g, "w2", 1) == [[0], [1], [2], [3]]
    assert not group_of(dg, "w", 1).prunable  # input channels: graph input protected
    assert not group_of(dg, "w2", 0).prunable  # output channels: graph output protected
    assert ("h", 2) not in {(a.tensor, a.axis) for g in dg.channel_groups() for a in g.members}
    check_all_prunable(dg, expect=1)
    model = checked_prune(dg, {g.id: [1, 2]}).model
    assert initializer(model, "w2").shape == (5, 2, 1, 1)
    assert initializer(model, "b").shape == (2,)


def test_grouped_conv_prunes_the_same_position_in_every_group():
    # 8 -> 8 channels in 2 groups: input position r of every group is one unit, so is output position r
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[8,3,1,1] w1, float[8,4,3,3] wg, float[8] bg,
                                                     float[2,8,1,1] w3> {
      a = Conv (x, w1)
      h = Conv <group=2, pads=[1,1,1,1]> (a, wg, bg)
      y = Conv (h, w3)
    }""")
    into = group_of(dg, "w1", 0)
    assert into.size == 4
    assert table(into, "a", 1) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert table(into, "wg", 1) == [[0], [1], [2], [3]]
    out = group_of(dg, "wg", 0)
    assert out.size == 4
    assert table(out, "wg", 0) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert table(out, "w3", 1) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    check_all_prunable(dg, expect=2)
    model = checked_prune(dg, {out.id: [1], into.id: [0, 3]}).model
    assert attribute(model, "Conv", "group", uses="wg") == 2
    assert initializer(model, "wg").shape == (6, 2, 3, 3)


def test_depthwise_conv_removes_whole_groups_and_rewrites_group():
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[4,3,1,1] w1, float[8,1,3,3] wd, float[8] bd,
                                                     float[2,8,1,1] w3> {
      a = Conv (x, w1)
      h = Conv <group=4, pads=[1,1,1,1]> (a, wd, bd)
      y = Conv (h, w3)
    }""")
    g = group_of(dg, "w1", 0)
    assert g.size == 4
    assert table(g, "a", 1) == [[0], [1], [2], [3]]
    assert table(g, "wd", 0) == [[0, 1], [2, 3], [4, 5], [6, 7]]  # channel multiplier 2
    assert table(g, "w3", 1) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert member_axes(g) >= {("bd", 0), ("h", 1)}
    check_all_prunable(dg, expect=1)
    model = checked_prune(dg, {g.id: [0, 2]}).model
    assert attribute(model, "Conv", "group", uses="wd") == 2
    assert initializer(model, "wd").shape == (4, 1, 3, 3)


def test_conv_transpose_plain_and_1d():
    dg = analyse(header() + """
    agraph (float[N,3,8] x) => (float[N,2,16] y) <float[4,3,1] w1, float[4,6,2] wt, float[6] bt,
                                                  float[2,6,1] w3> {
      a = Conv (x, w1)
      h = ConvTranspose <strides=[2]> (a, wt, bt)
      y = Conv (h, w3)
    }""")
    into = group_of(dg, "w1", 0)
    assert member_axes(into) == {("w1", 0), ("a", 1), ("wt", 0)}
    out = group_of(dg, "wt", 1)
    assert out.root == ("wt", 1) and member_axes(out) == {("wt", 1), ("bt", 0), ("h", 1), ("w3", 1)}
    check_all_prunable(dg, expect=2)


def test_grouped_conv_transpose_uniform():
    dg = analyse(header() + """
    agraph (float[N,3,4,4] x) => (float[N,2,8,8] y) <float[4,3,1,1] w1, float[4,3,2,2] wt, float[6] bt,
                                                     float[2,6,1,1] w3> {
      a = Conv (x, w1)
      h = ConvTranspose <strides=[2,2], group=2> (a, wt, bt)
      y = Conv (h, w3)
    }""")
    out = group_of(dg, "wt", 1)
    assert out.size == 3
    assert table(out, "h", 1) == [[0, 3], [1, 4], [2, 5]]
    into = group_of(dg, "w1", 0)
    assert table(into, "a", 1) == [[0, 2], [1, 3]]
    check_all_prunable(dg, expect=2)


def test_depthwise_conv_transpose_rewrites_group():
    dg = analyse(header() + """
    agraph (float[N,3,4,4] x) => (float[N,2,8,8] y) <float[4,3,1,1] w1, float[4,2,2,2] wt, float[2,8,1,1] w3> {
      a = Conv (x, w1)
      h = ConvTranspose <strides=[2,2], group=4> (a, wt)
      y = Conv (h, w3)
    }""")
    g = group_of(dg, "w1", 0)
    assert table(g, "h", 1) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert table(g, "wt", 0) == [[0], [1], [2], [3]]
    check_all_prunable(dg, expect=1)
    model = checked_prune(dg, {g.id: [3]}).model
    assert attribute(model, "ConvTranspose", "group") == 3


def test_weight_shared_by_two_convs_couples_their_outputs():
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x, float[N,3,8,8] x2) => (float[N,2,8,8] y, float[N,2,8,8] y2) <float[4,3,1,1] w,
                                                                      float[2,4,1,1] w2, float[2,4,1,1] w3> {
      a = Conv (x, w)
      b = Conv (x2, w)
      r = Relu (b)
      y = Conv (a, w2)
      y2 = Conv (r, w3)
    }""")
    g = group_of(dg, "w", 0)
    assert member_axes(g) == {("w", 0), ("a", 1), ("b", 1), ("r", 1), ("w2", 1), ("w3", 1)}
    check_all_prunable(dg, expect=1)


def test_depthwise_after_concat_loses_channels_of_both_inputs():
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[3,3,1,1] wa, float[5,3,1,1] wb, float[8,1,3,3] wd,
                                                     float[2,8,1,1] w3> {
      a = Conv (x, wa)
      b = Conv (x, wb)
      c = Concat <axis=1> (a, b)
      h = Conv <group=8, pads=[1,1,1,1]> (c, wd)
      y = Conv (h, w3)
    }""")
    ga, gb = group_of(dg, "wa", 0), group_of(dg, "wb", 0)
    assert table(gb, "wd", 0) == [[3], [4], [5], [6], [7]]
    check_all_prunable(dg, expect=2)
    plan = {ga.id: [0], gb.id: [1, 4]}
    assert attribute(checked_prune(dg, plan).model, "Conv", "group", uses="wd") == 5
