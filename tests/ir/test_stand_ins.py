"""Sizes learned from symbolic dims by stand-in evaluation (issue 9): Reshape's -1 next to a merged dynamic factor
(DGCNN's EdgeConv views under TorchScript), Slice bounds read by Shape (TorchScript's scatter_add), a [0:1] slice of
a symbolic dim, and the Expand naming that used to give two run-time sizes one name (TorchScript's index_add)."""

from __future__ import annotations

import numpy as np

import onnxprune as op
from onnxprune.ir.loading import load
from onnxprune.ir.stand_ins import evaluate_with_stand_ins
from onnxprune.validation.oracle import compare
from tests.support.checked import checked_prune
from tests.support.handlers_util import analyse, check_all_prunable, group_of, header, make_model


def _shapes(model) -> dict[str, list]:
    return {t.name: t.shape for t in load(model).graph.tensors().values()}


def test_entries_are_constants_symbols_or_unknown():
    dims = evaluate_with_stand_ins(lambda size: [size("B") * 24, 16, size("N"), min(size("B"), 2), 7 * 0 + 3])
    assert dims == [None, 16, "N", None, 3]
    assert evaluate_with_stand_ins(lambda size: [size(None)]) is None
    assert evaluate_with_stand_ins(lambda size: None) is None


# EdgeConv's flat neighbour gather: [B, N, C] viewed [B*N, -1] with B*N computed from Shape(x)[0] * N.
EDGE_VIEW = header() + """
agraph (float[B,6,3] x) => (float[B,6,2,2] y) <float[3,4] w, int64[1] zero, int64[1] six, int64[1] minus,
                                                  int64[3] tail, int64[12] idx, float[4,2] w2> {
  h = MatMul (x, w)
  s = Shape (h)
  b = Slice (s, zero, one)
  bn = Mul (b, six)
  target = Concat <axis=0> (bn, minus)
  flat = Reshape (h, target)
  picked = Gather <axis=0> (flat, idx)
  back = Concat <axis=0> (b, tail)
  v = Reshape (picked, back)
  y = MatMul (v, w2)
}"""


def _edge_view_model():
    return make_model(EDGE_VIEW.replace("int64[1] zero,", "int64[1] zero, int64[1] one,"),
                      zero=np.array([0]), one=np.array([1]), six=np.array([6]), minus=np.array([-1]),
                      tail=np.array([6, 2, 4]), idx=np.arange(12) % 6)


def test_reshape_minus_one_next_to_a_merged_dynamic_factor_is_known():
    shapes = _shapes(_edge_view_model())
    assert shapes["flat"][1] == 4 and isinstance(shapes["flat"][0], str), shapes["flat"]


def test_channels_through_the_merged_view_prune_oracle_exact():
    """Before stand-ins the channel axis was merged into an unknown dim and the group was blocked."""
    dg = op.analyse_model(_edge_view_model())
    assert group_of(dg, "w", 1).prunable, group_of(dg, "w", 1).blocked_reasons
    check_all_prunable(dg, expect=1)


SCATTER_ADD = header() + """
agraph (float[E,4] m, int64[E] dst, float[N,4] zero) => (float[N,4] y) <int64[2] starts> {
  u = Unsqueeze (dst, axis0)
  s = Shape (m)
  i = Expand (u, s)
  si = Shape (i)
  src = Slice (m, starts, si)
  y = ScatterElements <axis=0, reduction="add"> (zero, i, src)
}"""


def test_slice_to_the_shape_of_a_same_shaped_tensor_keeps_its_dims():
    model = make_model(SCATTER_ADD.replace("<int64[2] starts>", "<int64[2] starts, int64[1] axis0>"),
                       starts=np.zeros(2, np.int64), axis0=np.array([1]))
    shapes = _shapes(model)
    assert shapes["src"] == shapes["m"] == ["E", 4], shapes


def test_slice_of_one_entry_of_a_symbolic_dim_is_one_and_lends_no_name():
    """TorchScript's index_add: Expand(msg, Shape(Slice(zeros[N, 4, 8], [0:1]))). The Expand output is msg's size
    [E, 4, 8], not the slice's: both got one name, and onnxruntime refused to reuse a buffer of the wrong size."""
    model = make_model(header() + """
    agraph (float[E,4,8] msg, float[N,4,8] zeros) => (float[E,4,8] y) <int64[3] starts, int64[3] ends> {
      first = Slice (zeros, starts, ends)
      s = Shape (first)
      e = Expand (msg, s)
      y = Relu (e)
    }""", starts=np.zeros(3, np.int64), ends=np.array([1, 2**62, 2**62]))
    shapes = _shapes(model)
    assert shapes.get("first", [1, 4, 8]) == [1, 4, 8] and shapes["e"] == ["E", 4, 8], shapes


def test_slice_ending_at_a_shape_couples_and_prunes():
    """Heads through TorchScript's scatter_add: the Slice end read by Shape follows the pruned axis."""
    dg = analyse(header() + """
    agraph (float[E,3] x, int64[E] dst) => (float[5,2] y) <float[3,4] w, int64[2] starts, int64[1] axis1,
                                                          float[5,4] zero, float[4,2] w2> {
      m = MatMul (x, w)
      u = Unsqueeze (dst, axis1)
      s = Shape (m)
      i = Expand (u, s)
      si = Shape (i)
      src = Slice (m, starts, si)
      r = ScatterElements <axis=0, reduction="add"> (zero, i, src)
      y = MatMul (r, w2)
    }""", starts=np.zeros(2, np.int64), axis1=np.array([1]), zero=np.zeros((5, 4), np.float32))
    group = group_of(dg, "w", 1)
    assert group.prunable and dg.prunable_groups() == [group], group.blocked_reasons
    rng = np.random.default_rng(0)
    feed = {"x": rng.standard_normal((7, 3)).astype(np.float32), "dst": rng.integers(0, 5, 7)}
    for units in ([1], [0, 3]):
        pruned = checked_prune(dg, {group.id: units})
        assert compare(op.masked_model(dg, {group.id: units}), pruned.model, feed).passed
