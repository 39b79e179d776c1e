"""Message passing and the other seed-system patterns (issue 9): ScatterElements / ScatterND couple the feature
axis and leave node/edge axes alone; a Softmax read by a constant projection (DFL) blocks its bins; a per-channel
norm's shared constants do not tie norms together; dynamic H/W merged into one axis does not block channels."""

from __future__ import annotations

import numpy as np

from tests.support.handlers_util import analyse, check_all_prunable, group_of, header, member_axes

SRC = np.array([0, 1, 2, 3, 4, 0], dtype=np.int64)
DST = np.array([1, 2, 3, 4, 0, 2], dtype=np.int64)


def test_scatter_elements_couples_features_of_messages_and_nodes():
    index = np.repeat(DST[:, None], 6, axis=1)
    dg = analyse(header() + """
    agraph (float[5,4] x) => (float[5,3] y) <float[4,6] w, int64[6] src, int64[6,6] idx, float[5,6] zero,
                                             float[6,3] w2> {
      h = MatMul (x, w)
      m = Gather <axis=0> (h, src)
      s = ScatterElements <axis=0, reduction="add"> (zero, idx, m)
      r = Relu (s)
      y = MatMul (r, w2)
    }""", src=SRC, idx=index, zero=np.zeros((5, 6), np.float32))
    g = group_of(dg, "w", 1)
    assert {("m", 1), ("s", 1), ("idx", 1), ("zero", 1), ("w2", 0)} <= member_axes(g)
    assert ("s", 0) not in member_axes(g)
    check_all_prunable(dg, expect=1)


def test_scatter_nd_index_add_couples_trailing_axes():
    dg = analyse(header() + """
    agraph (float[5,4] x) => (float[5,3] y) <float[4,6] w, int64[6] src, int64[6,1] idx, float[5,6] zero,
                                             float[6,3] w2> {
      h = MatMul (x, w)
      m = Gather <axis=0> (h, src)
      s = ScatterND <reduction="add"> (zero, idx, m)
      y = MatMul (s, w2)
    }""", src=SRC, idx=DST[:, None], zero=np.zeros((5, 6), np.float32))
    g = group_of(dg, "w", 1)
    assert {("m", 1), ("s", 1), ("zero", 1), ("w2", 0)} <= member_axes(g)
    check_all_prunable(dg, expect=1)


def test_softmax_read_by_constant_conv_blocks_the_bins():
    dg = analyse(header() + """
    agraph (float[N,3,4,4] x) => (float[N,1,4,4] y) <float[8,3,1,1] w, float[1,8,1,1] proj> {
      h = Conv (x, w)
      p = Softmax <axis=1> (h)
      y = Conv (p, proj)
    }""", proj=np.arange(8, dtype=np.float32).reshape(1, 8, 1, 1))
    g = group_of(dg, "w", 0)
    assert not g.prunable and any("(DFL)" in r for r in g.blocked_reasons), g.blocked_reasons


def test_instance_norms_sharing_constants_stay_apart():
    dg = analyse(header() + """
    agraph (float[N,3,4,4] x) => (float[N,2,4,4] y) <float[4,3,1,1] w, float[4,4,1,1] w1, float[4] one,
                                                     float[4] nil, float[2,4,1,1] w2> {
      h = Conv (x, w)
      a = InstanceNormalization (h, one, nil)
      b = Conv (a, w1)
      c = InstanceNormalization (b, one, nil)
      y = Conv (c, w2)
    }""", one=np.ones(4, np.float32), nil=np.zeros(4, np.float32))
    assert group_of(dg, "w", 0) is not group_of(dg, "w1", 0)
    check_all_prunable(dg, expect=2)


def test_reshape_merging_dynamic_spatial_dims_keeps_channels():
    dg = analyse(header() + """
    agraph (float[N,3,H,W] x) => (float[N,2,A] y) <float[4,3,1,1] w, int64[3] shape, float[2,4] w2> {
      h = Conv (x, w)
      r = Reshape (h, shape)
      t = Transpose <perm=[0,2,1]> (r)
      m = MatMul (t, w2t)
      y = Transpose <perm=[0,2,1]> (m)
    }""".replace("float[2,4] w2", "float[4,2] w2t"), shape=np.array([0, 4, -1], dtype=np.int64))
    g = group_of(dg, "w", 0)
    assert ("r", 1) in member_axes(g) and g.prunable, g.blocked_reasons
