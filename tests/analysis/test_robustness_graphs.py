"""Graphs real exports contain that a pruner must not get wrong: control flow and custom ops (custom ops opaque;
If/Loop/Scan coupled through their bodies, here up to protected graph outputs: groups blocked with the reason, the
rest pruned), one weight shared by two nodes (coupled), initializers that are
also graph inputs (blocked: they can be overridden at run time), weights shared through Identity nodes (as the
TorchScript exporter writes them)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx.parser
import pytest
from click.testing import CliRunner

import onnxprune as op
from onnxprune.cli import main
from onnxprune.validation.oracle import compare
from tests.support.checked import checked_prune
from tests.support.handlers_util import group_of, make_model

CONTROL_FLOW = """
<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
agraph (float[N,3,8,8] x, bool cond) => (float[N,2,8,8] y, float[N,4,8,8] z, float[N,4,8,8] lo, float[N,6,8,8] so,
                                         float[N,5,8,8] mg)
       <float[4,3,1,1] wi, float[4,3,1,1] wl, float[6,3,1,1] ws, float[5,3,1,1] wm, float[6,3,1,1] wb,
        float[2,6,3,3] w2, int64 trip> {
  h = Conv (x, wi)
  z = If (cond) <then_branch = then_g () => (float[N,4,8,8] t) { t = Relu (h) },
                 else_branch = else_g () => (float[N,4,8,8] e) { e = Neg (h) }>
  l = Conv (x, wl)
  lo = Loop (trip, , l) <body = body_g (int64 it, bool c_in, float[N,4,8,8] acc) => (bool c_out, float[N,4,8,8] acc2) {
      c_out = Identity (c_in)
      acc2 = Add (acc, acc)
  }>
  s = Conv (x, ws)
  so = Scan (s) <num_scan_inputs = 1, body = scan_g (float[6,8,8] st) => (float[6,8,8] sy) { sy = Relu (st) }>
  m = Conv (x, wm)
  mg = com.microsoft.Gelu (m)
  b = Conv (x, wb)
  r = Relu (b)
  y = Conv <pads = [1, 1, 1, 1]> (r, w2)
}"""


def test_control_flow_and_custom_ops_block_their_groups_and_the_rest_is_pruned(tmp_path):
    model = make_model(CONTROL_FLOW, trip=np.array(2, dtype=np.int64))
    onnx.checker.check_model(model, full_check=True)
    dg = op.analyse_model(model)
    reasons = {name: group_of(dg, name, 0).blocked_reasons for name in ("wi", "wl", "ws", "wm")}
    assert "graph output 'z' axis 1 is protected" in reasons["wi"]
    assert "graph output 'lo' axis 1 is protected" in reasons["wl"]
    assert "graph output 'so' axis 1 is protected" in reasons["ws"]
    assert any("op 'com.microsoft::Gelu' is not supported (opaque)" in r for r in reasons["wm"])
    assert [g.root.tensor for g in dg.prunable_groups()] == ["wb"]
    src, out = tmp_path / "cf.onnx", tmp_path / "cf_pruned.onnx"
    onnx.save_model(model, str(src))
    result = CliRunner().invoke(main, ["prune", str(src), str(out), "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["groups"]["pruned"] == 1 and report["validation"]["passed"] and report["validation"]["oracle"]
    pruned = onnx.load(str(out))
    assert {n.op_type for n in pruned.graph.node} >= {"If", "Loop", "Scan", "Gelu"}
    assert {t.name: list(t.dims) for t in pruned.graph.initializer}["wb"] == [3, 3, 1, 1]


SHARED = """
<ir_version: 8, opset_import: ["" : 17]>
agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[6,3,1,1] w, float[2,{width},1,1] w2> {{
  a = Conv (x, w)
  {second}
  s = {merge} (a, b)
  r = Relu (s)
  y = Conv (r, w2)
}}"""


@pytest.mark.parametrize("second", ["b = Conv (x, w)", "wi = Identity (w)\n  b = Conv (x, wi)"],
                         ids=["direct", "through_identity"])
@pytest.mark.parametrize("merge", ["Add", "Concat <axis = 1>"], ids=["add", "concat"])
def test_shared_weight_prunes_both_users_consistently(second, merge):
    """One weight used by two convs (directly, or through an Identity as TorchScript writes shared weights): the
    two convs' channels are pruned together (coupled by the shared weight or by Add), or, when folding gives each
    conv its own copy of an Identity-shared weight and nothing else couples them, separately; either way the
    loaded graph computes what the file does, and the pruned model is the masked one."""
    model = make_model(SHARED.format(second=second, merge=merge, width=6 if merge == "Add" else 12))
    dg = op.analyse_model(model)
    from onnxprune.ir.export import export_graph

    assert compare(model, export_graph(dg.graph, dg.loaded)).max_abs_diff == 0.0  # folding kept the function
    groups = dg.prunable_groups()
    copies = merge != "Add" and "Identity" in second
    assert len(groups) == (2 if copies else 1), "\n".join(g.details() for g in dg.channel_groups())
    plan = {g.id: [0, 3, 5] for g in groups}
    for one in [{gid: units} for gid, units in plan.items()] + [plan]:
        result = checked_prune(dg, one)
        assert compare(op.masked_model(dg, one), result.model).passed
    if merge == "Add":  # by hand: channels 0, 3, 5 of both convs are gone
        from onnxprune.runtime import run

        inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
        w, w2, keep = inits["w"], inits["w2"], [1, 2, 4]
        x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
        a = np.einsum("oc,nchw->nohw", w[keep, :, 0, 0], x)
        expected = np.einsum("oc,nchw->nohw", w2[:, keep, 0, 0], np.maximum(a + a, 0))
        assert np.allclose(run(checked_prune(dg, plan).model, {"x": x})[0], expected, atol=1e-4)


def test_initializer_listed_as_graph_input_is_blocked_and_stays_an_input():
    model = make_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N,3,8,8] x, float[6,3,1,1] w) => (float[N,2,8,8] y) <float[6,3,1,1] w, float[2,6,1,1] w2,
                                                                        float[6,6,1,1] w3> {
      a = Conv (x, w)
      r = Relu (a)
      c = Conv (r, w3)
      y = Conv (c, w2)
    }""")
    dg = op.analyse_model(model)
    g = group_of(dg, "w", 0)
    assert not g.prunable
    assert "initializer 'w' is also a graph input, so it can be overridden at run time" in g.blocked_reasons[0]
    free = group_of(dg, "w3", 0)
    assert free.prunable
    pruned = checked_prune(dg, {free.id: [1, 2]}).model
    assert [i.name for i in pruned.graph.input] == ["x", "w"]
    assert {t.name: list(t.dims) for t in pruned.graph.initializer}["w"] == [6, 3, 1, 1]
    assert compare(op.masked_model(dg, {free.id: [1, 2]}), pruned).passed


def test_identity_of_an_overridable_initializer_is_not_folded():
    """Folding Identity(w) into a constant would freeze a weight the user may feed at run time."""
    model = make_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N,3,8,8] x, float[6,3,1,1] w) => (float[N,6,8,8] y) <float[6,3,1,1] w> {
      wi = Identity (w)
      y = Conv (x, wi)
    }""")
    dg = op.analyse_model(model)
    assert [n.op for n in dg.graph.nodes] == ["Identity", "Conv"]
    assert not dg.prunable_groups()


def test_resize_that_keeps_the_channel_count_but_moves_indices_blocks_it():
    """Found by fuzzing: nearest Resize by 1.0625 on 12 channels gives 12 channels again, but output channel i
    reads input channel round((i + 0.5) / 1.0625 - 0.5): not the same axis, so its group must be blocked."""
    model = make_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[12,3,1,1] w, float[4] scales, float[2,12,1,1] w2> {
      h = Conv (x, w)
      r = Resize <mode = "nearest"> (h, , scales)
      y = Conv (r, w2)
    }""", scales=np.array([1, 1.0625, 1, 1], dtype=np.float32))
    dg = op.analyse_model(model)
    g = group_of(dg, "w", 0)
    assert not g.prunable and any("resizes this axis" in r for r in g.blocked_reasons)


def test_nodes_out_of_topological_order_are_sorted_and_pruned():
    model = make_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[6,3,1,1] w, float[2,6,1,1] w2> {
      y = Conv (r, w2)
      r = Relu (h)
      h = Conv (x, w)
    }""")
    dg = op.analyse_model(model)
    g = group_of(dg, "w", 0)
    assert g.prunable
    assert compare(op.masked_model(dg, {g.id: [1, 4]}), checked_prune(dg, {g.id: [1, 4]}).model).passed
