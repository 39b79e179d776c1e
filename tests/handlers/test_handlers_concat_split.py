"""Concat, Split and Slice handlers: offset maps, every opset form of Split sizes and Slice bounds."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.checked import checked_prune
from tests.support.handlers_util import (
    analyse,
    attribute,
    check_all_prunable,
    group_of,
    header,
    initializer,
    member_axes,
    output_shapes,
    table,
)

TWO_CONVS = "<float[3,3,1,1] wa, float[5,3,1,1] wb, float[2,8,1,1] wc>"


def test_concat_second_input_is_offset_by_first_size():
    dg = analyse(header() + f"""
    agraph (float[N,3,4,4] x) => (float[N,2,4,4] y) {TWO_CONVS} {{
      a = Conv (x, wa)
      b = Conv (x, wb)
      c = Concat <axis=1> (a, b)
      y = Conv (c, wc)
    }}""")
    ga, gb = group_of(dg, "wa", 0), group_of(dg, "wb", 0)
    assert table(ga, "c", 1) == [[0], [1], [2]]
    assert table(gb, "c", 1) == [[3], [4], [5], [6], [7]]
    assert table(gb, "wc", 1) == [[3], [4], [5], [6], [7]]
    check_all_prunable(dg, expect=2)
    model = checked_prune(dg, {ga.id: [1], gb.id: [0, 4]}).model
    assert initializer(model, "wc").shape == (2, 5, 1, 1)
    assert output_shapes(model)["c"] == ["N", 5, 4, 4]


def test_concat_of_the_same_tensor_twice_removes_both_copies():
    dg = analyse(header() + """
    agraph (float[N,3,4,4] x) => (float[N,2,4,4] y) <float[4,3,1,1] wa, float[4] s, float[2,8,1,1] wc> {
      a = Conv (x, wa)
      c = Concat <axis=-3> (a, a)
      y = Conv (c, wc)
    }""")
    g = group_of(dg, "wa", 0)
    assert table(g, "c", 1) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    check_all_prunable(dg, expect=1)


def test_batchnorm_after_concat_belongs_to_one_group_per_input():
    dg = analyse(header() + f"""
    agraph (float[N,3,4,4] x) => (float[N,2,4,4] y) {TWO_CONVS[:-1]}, float[8] sc, float[8] bi, float[8] mu,
                                                      float[8] var> {{
      a = Conv (x, wa)
      b = Conv (x, wb)
      c = Concat <axis=1> (a, b)
      n = BatchNormalization (c, sc, bi, mu, var)
      y = Conv (n, wc)
    }}""")
    assert [table(g, "sc", 0) for g in dg.group_of("sc", 0)] == [[[0], [1], [2]], [[3], [4], [5], [6], [7]]]
    check_all_prunable(dg, expect=2)


SPLIT_BODY = """
      a = Conv (x, wa)
      {split}
      p = Conv (s0, w0)
      q = Conv (s1, w1)
      y = Add (p, q)
"""


@pytest.mark.parametrize("opset,split,consts", [
    (11, "s0, s1 = Split <axis=1, split=[2, 4]> (a)", {}),
    (13, "s0, s1 = Split <axis=1> (a, sizes)", {"sizes": np.array([2, 4])}),
    (18, "s0, s1 = Split <axis=1> (a, sizes)", {"sizes": np.array([2, 4])}),
])
def test_split_with_sizes_offsets_second_output(opset, split, consts):
    sizes = ", int64[2] sizes" if consts else ""
    dg = analyse(header(opset) + """
    agraph (float[N,3,4,4] x) => (float[N,2,4,4] y) <float[6,3,1,1] wa, float[2,2,1,1] w0, float[2,4,1,1] w1
    """ + sizes + "> {" + SPLIT_BODY.format(split=split) + "}", **consts)
    first, second = dg.group_of("wa", 0)
    assert table(first, "s0", 1) == [[0], [1]] and table(first, "a", 1) == [[0], [1]]
    assert table(second, "s1", 1) == [[0], [1], [2], [3]] and table(second, "a", 1) == [[2], [3], [4], [5]]
    assert member_axes(second) == {("wa", 0), ("a", 1), ("s1", 1), ("w1", 1)}
    check_all_prunable(dg, expect=2)
    model = checked_prune(dg, {second.id: [0, 3]}).model
    if opset == 11:
        assert attribute(model, "Split", "split") == [2, 2]
    else:
        assert initializer(model, "sizes").tolist() == [2, 2]


@pytest.mark.parametrize("opset,split", [
    (11, "s0, s1 = Split <axis=1> (a)"),
    (13, "s0, s1 = Split <axis=1> (a)"),
    (18, "s0, s1 = Split <axis=1, num_outputs=2> (a)"),
])
def test_equal_split_gets_explicit_sizes_after_pruning(opset, split):
    dg = analyse(header(opset) + """
    agraph (float[N,3,4,4] x) => (float[N,2,4,4] y) <float[8,3,1,1] wa, float[2,4,1,1] w0, float[2,4,1,1] w1> {
    """ + SPLIT_BODY.format(split=split) + "}")
    first, second = dg.group_of("wa", 0)
    assert table(second, "a", 1) == [[4], [5], [6], [7]]
    check_all_prunable(dg, expect=2)
    model = checked_prune(dg, {first.id: [1]}).model
    shapes = output_shapes(model)
    assert shapes["s0"] == ["N", 3, 4, 4] and shapes["s1"] == ["N", 4, 4, 4]
    assert attribute(model, "Split", "num_outputs") is None


def test_split_into_three_and_pruning_the_middle_output():
    dg = analyse(header(13) + """
    agraph (float[N,3,4,4] x) => (float[N,2,4,4] y) <float[9,3,1,1] wa, int64[3] sizes, float[2,2,1,1] w0,
                                                     float[2,3,1,1] w1, float[2,4,1,1] w2> {
      a = Conv (x, wa)
      s0, s1, s2 = Split <axis=1> (a, sizes)
      p = Conv (s0, w0)
      q = Conv (s1, w1)
      r = Conv (s2, w2)
      t = Add (p, q)
      y = Add (t, r)
    }""", sizes=np.array([2, 3, 4]))
    middle = group_of(dg, "s1", 1)
    assert table(middle, "wa", 0) == [[2], [3], [4]]
    check_all_prunable(dg, expect=3)
    assert initializer(checked_prune(dg, {middle.id: [1]}).model, "sizes").tolist() == [2, 2, 4]


def test_split_then_concat_in_swapped_order():
    dg = analyse(header(13) + """
    agraph (float[N,3,4,4] x) => (float[N,2,4,4] y) <float[6,3,1,1] wa, int64[2] sizes, float[2,6,1,1] wc> {
      a = Conv (x, wa)
      s0, s1 = Split <axis=1> (a, sizes)
      c = Concat <axis=1> (s1, s0)
      y = Conv (c, wc)
    }""", sizes=np.array([2, 4]))
    assert table(group_of(dg, "s0", 1), "wc", 1) == [[4], [5]]
    assert table(group_of(dg, "s1", 1), "wc", 1) == [[0], [1], [2], [3]]
    check_all_prunable(dg, expect=2)


def _slice_model(opset: int, slice_line: str, consts: dict, channels: int = 8):
    decls = "".join(f", int64[{len(v)}] {k}" for k, v in consts.items())
    return analyse(header(opset) + f"""
    agraph (float[N,3,4,4] x) => (float[N,2,4,4] y) <float[{channels},3,1,1] wa, float[2,4,1,1] wc{decls}> {{
      a = Conv (x, wa)
      {slice_line}
      y = Conv (s, wc)
    }}""", **consts)


BIG = 2**63 - 1


@pytest.mark.parametrize("opset,line,consts", [
    (9, "s = Slice <starts=[3], ends=[7], axes=[1]> (a)", {}),
    (9, "s = Slice <starts=[-4], ends=[9223372036854775807], axes=[1]> (a)", {}),  # [3, 7) of 7
    (10, "s = Slice (a, st, en)", {"st": [0, 3], "en": [BIG, 7]}),
    (13, "s = Slice (a, st, en, ax)", {"st": [3], "en": [7], "ax": [1]}),
    (13, "s = Slice (a, st, en, ax)", {"st": [-5], "en": [-1], "ax": [-3]}),
    (13, "s = Slice (a, st, en, ax, sp)", {"st": [3], "en": [BIG], "ax": [1], "sp": [1]}),
])
def test_slice_maps_output_index_i_to_input_start_plus_i(opset, line, consts):
    consts = {k: np.array(v, dtype=np.int64) for k, v in consts.items()}
    ends_at_8 = "9223372036854775807" in line or BIG in consts.get("en", [])
    channels = 8 if not ends_at_8 else 7
    dg = _slice_model(opset, line, consts, channels=channels)
    inside = group_of(dg, "s", 1)
    assert table(inside, "a", 1) == [[3], [4], [5], [6]]
    assert table(inside, "wa", 0) == [[3], [4], [5], [6]]
    outside = [g for g in dg.group_of("wa", 0) if g is not inside]
    assert len(outside) == 1 and table(outside[0], "wa", 0) == [[0], [1], [2]] + ([[7]] if channels == 8 else [])
    check_all_prunable(dg, expect=2)
    # removing a channel before the slice shifts its start; removing one inside shrinks it
    model = checked_prune(dg, {outside[0].id: [0], inside.id: [1]}).model
    assert output_shapes(model)["s"] == ["N", 3, 4, 4]


def test_slice_on_a_dynamic_and_a_flipped_axis_keeps_those_bounds():
    # channel pruning must not rewrite the bounds of other axes (dynamic sequence axis, negative step)
    dg = analyse(header(13) + """
    agraph (float[N,3,T,4] x) => (float[N,2,T,4] y) <float[6,3,1,1] wa, float[2,6,1,1] wc,
                                                     int64[2] st, int64[2] en, int64[2] ax, int64[2] sp> {
      a = Conv (x, wa)
      s = Slice (a, st, en, ax, sp)
      y = Conv (s, wc)
    }""", st=np.array([0, -1]), en=np.array([BIG, -BIG]), ax=np.array([2, 3]), sp=np.array([1, -1]))
    g = group_of(dg, "wa", 0)
    assert table(g, "s", 1) == [[i] for i in range(6)]
    check_all_prunable(dg, expect=1)


def test_strided_channel_slice_blocks():
    dg = _slice_model(13, "s = Slice (a, st, en, ax, sp)",
                      {k: np.array(v) for k, v in {"st": [0], "en": [8], "ax": [1], "sp": [2]}.items()})
    assert not dg.prunable_groups()
    (g,) = dg.group_of("wa", 0)
    assert any("every 2-th entry" in r for r in g.blocked_reasons)


@pytest.mark.parametrize("axis,prunable", [(3, True), (1, False)])
def test_slice_with_run_time_bounds_blocks_only_the_axes_it_slices(axis, prunable):
    # rotate_half after onnxruntime's optimizer: q[..., Shape(q)[3] / 2:], a start computed at run time
    dg = analyse(header(13) + """
    agraph (float[N,3,4,T] x) => (float[N,2,4,M] y) <float[6,3,1,1] wa, float[2,6,1,1] wc, int64 three, int64 two,
                                                     int64[1] zero, int64[1] en, int64[1] ax> {
      a = Conv (x, wa)
      shape = Shape (a)
      t = Gather <axis=0> (shape, three)
      half = Div (t, two)
      st = Unsqueeze (half, zero)
      s = Slice (a, st, en, ax)
      y = Conv (s, wc)
    }""", three=np.array(3), two=np.array(2), zero=np.array([0]), en=np.array([BIG]), ax=np.array([axis]))
    (g,) = dg.group_of("wa", 0)
    if not prunable:
        assert not dg.prunable_groups() and any("computed at run time" in r for r in g.blocked_reasons)
        return
    assert table(g, "s", 1) == [[i] for i in range(6)]
    check_all_prunable(dg, expect=1)
    model = checked_prune(dg, {g.id: [0, 4]}).model
    assert initializer(model, "wc").shape == (2, 4, 1, 1)
