"""Resize/Upsample and Pad handlers: unchanged axes are coupled, resized/padded axes blocked, sizes rewritten."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.axes import ChannelAxis
from tests.support.checked import checked_prune
from tests.support.handlers_util import analyse, check_all_prunable, group_of, header, initializer, member_axes

CHAIN = {("w", 0), ("h", 1), ("r", 1), ("w2", 1)}


def _model(opset: int, line: str, decl: str = "", batch: str = "N", out: str = "16,16", **consts):
    return analyse(header(opset) + f"""
    agraph (float[{batch},3,8,8] x) => (float[{batch},2,{out}] y) <float[4,3,1,1] w, float[2,4,1,1] w2{decl}> {{
      h = Conv (x, w)
      {line}
      y = Conv (r, w2)
    }}""", **consts)


SCALES = np.array([1, 1, 2, 2], dtype=np.float32)


@pytest.mark.parametrize("opset,line,decl,consts", [
    (9, "r = Upsample (h, scales)", ", float[4] scales", {"scales": SCALES}),
    (10, "r = Resize (h, scales)", ", float[4] scales", {"scales": SCALES}),
    (11, "r = Resize (h, roi, scales)", ", float[0] roi, float[4] scales",
     {"roi": np.zeros(0, np.float32), "scales": SCALES}),
    (13, 'r = Resize <mode="linear"> (h, , scales)', ", float[4] scales", {"scales": SCALES}),
])
def test_resize_with_scales_keeps_the_channel(opset, line, decl, consts):
    dg = _model(opset, line, decl, **consts)
    g = group_of(dg, "w", 0)
    assert member_axes(g) == CHAIN and g.exact
    check_all_prunable(dg, expect=1)


@pytest.mark.parametrize("opset,axes,sizes", [(13, "", [2, 4, 16, 16]), (18, "<axes=[1, 2, 3]>", [4, 16, 16]),
                                              (18, "<axes=[2, 3]>", [16, 16])])
def test_resize_with_sizes_gets_the_pruned_channel_count(opset, axes, sizes):
    dg = _model(opset, f"r = Resize {axes} (h, , , sizes)", f", int64[{len(sizes)}] sizes", batch="2",
                sizes=np.array(sizes))
    g = group_of(dg, "w", 0)
    assert member_axes(g) == CHAIN
    check_all_prunable(dg, expect=1)
    new = initializer(checked_prune(dg, {g.id: [0, 3]}).model, "sizes").tolist()
    assert new == [s - 2 if s == 4 else s for s in sizes]


def test_resize_over_channels_blocks():
    dg = _model(13, "r = Resize (h, , scales)", ", float[4] scales", out="8,8",
                scales=np.array([1, 2, 1, 1], dtype=np.float32))
    g = group_of(dg, "w", 0)
    assert not g.prunable and any("Resize node" in r and "resizes this axis" in r for r in g.blocked_reasons)


@pytest.mark.parametrize("opset,line,decl,consts", [
    (11, "r = Pad (h, pads)", ", int64[8] pads", {"pads": [0, 0, 4, 4, 0, 0, 4, 4]}),
    (13, 'r = Pad <mode="reflect"> (h, pads)', ", int64[8] pads", {"pads": [0, 0, 4, 4, 0, 0, 4, 4]}),
    (13, "r = Pad (h, pads, cval)", ", int64[8] pads, float cval", {"pads": [0, 0, 4, 4, 0, 0, 4, 4],
                                                                       "cval": np.array(1.5, np.float32)}),
    (18, "r = Pad (h, pads, , axes)", ", int64[4] pads, int64[2] axes", {"pads": [4, 4, 4, 4], "axes": [-2, 3]}),
])
def test_pad_on_spatial_axes_keeps_the_channel(opset, line, decl, consts):
    dg = _model(opset, line, decl, **{k: np.asarray(v) for k, v in consts.items()})
    g = group_of(dg, "w", 0)
    assert member_axes(g) == CHAIN and g.exact
    check_all_prunable(dg, expect=1)
    assert any("pads this axis" in r for r in dg.record.blocks[ChannelAxis("r", 3)])
    assert not dg.record.blocks.get(ChannelAxis("r", 1))


def test_pad_as_attribute_opset_2():
    dg = _model(2, "r = Pad <pads=[0, 0, 4, 4, 0, 0, 4, 4]> (h)")
    g = group_of(dg, "w", 0)
    assert member_axes(g) == CHAIN
    # onnxruntime runs Pad-2, but nothing the mask oracle could use at opset 2: check the pruned model only
    assert initializer(checked_prune(dg, {g.id: [1]}).model, "w2").shape == (2, 3, 1, 1)


def test_pad_on_the_channel_axis_blocks():
    dg = _model(13, "r = Pad (h, pads)", ", int64[8] pads", out="8,8", pads=np.array([0, 1, 0, 0, 0, 1, 0, 0]))
    assert not dg.prunable_groups()
    g = dg.group_of("w", 0)[0]
    assert any("Pad node" in r and "pads this axis" in r for r in g.blocked_reasons)
