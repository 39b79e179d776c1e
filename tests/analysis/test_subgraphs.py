"""Networks inside If, Loop and Scan bodies (issue 8 part 3), on the builders of ``models.control_flow``: every
prunable group pruned by half, then the written model passes ``onnx.checker`` (full check) and runs in onnxruntime at
two different dynamic sizes (and down both branches of an If), where it matches the mask oracle; the oracle itself
differs from the original (it is not a copy); body weights, body sizes (a Reshape target inside a branch, the
ConstantOfShape that makes a Loop's initial state) and body value_info are rewritten."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnxprune.models import control_flow

import onnxprune as op
from onnxprune.analysis.stats import count_macs, count_params
from onnxprune.axes import ChannelAxis
from onnxprune.validation.oracle import compare
from tests.support.checked import checked_prune


def _if_feeds(batch: int, fast: bool, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, 3, 4, 4)).astype(np.float32), "fast": np.array(fast)}


def _rnn_feeds(batch: int, steps: int, seed: int) -> dict:
    return {"x": np.random.default_rng(seed).standard_normal((batch, steps, 6)).astype(np.float32)}


CASES = {
    # name: (builder, feeds at two sizes (and both branches), prunable group roots)
    "if_reshape": (control_flow.if_with_reshape_model,
                   [_if_feeds(2, True, 0), _if_feeds(5, False, 1), _if_feeds(3, False, 2), _if_feeds(1, True, 3)],
                   {"w_stem", "w_fast", "w_wide"}),
    "loop": (control_flow.recurrent_loop_model, [_rnn_feeds(2, 5, 0), _rnn_feeds(4, 11, 1)], {"wh"}),
    "scan": (control_flow.recurrent_scan_model, [_rnn_feeds(2, 5, 0), _rnn_feeds(4, 11, 1)], {"wx"}),
}


def _graphs(graph: onnx.GraphProto):
    """``graph`` and every body in it."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)


def _dims(info: onnx.ValueInfoProto) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", list(CASES))
def test_network_in_a_body_prunes_and_matches_the_oracle_at_two_sizes(name):
    build, feeds, roots = CASES[name]
    model = build()
    onnx.checker.check_model(model, full_check=True)
    dg = op.analyse_model(model)
    assert {g.root.tensor for g in dg.prunable_groups()} == roots, "\n".join(g.details() for g in dg.groups)
    plan = {g.id: list(range(0, g.size, 2)) for g in dg.prunable_groups()}
    pruned = checked_prune(dg, plan)  # onnx.checker full_check and an onnxruntime session
    masked = op.masked_model(dg, plan)
    result = compare(masked, pruned.exported, feeds=feeds)
    assert result.passed, result
    assert not compare(masked, model, feeds=feeds).passed  # the oracle really zeroes channels
    assert count_macs(pruned.graph) < count_macs(dg.graph) and count_params(pruned.graph) < count_params(dg.graph)


def test_if_branch_weights_reshape_target_and_value_info_are_rewritten():
    dg = op.analyse_model(control_flow.if_with_reshape_model())
    g = dg.group_of("w_fast", 0)[0]
    assert {ChannelAxis("t_out", 1), ChannelAxis("e_out", 1), ChannelAxis("f", 1), ChannelAxis("w_back", 0),
            ChannelAxis("w_fc", 1)} <= set(g.members)  # 8 channels x 16 features each, through both branches
    model = checked_prune(dg, {g.id: [0, 1, 2]}).model
    node = next(n for n in model.graph.node if n.op_type == "If")
    then_g, else_g = (next(a.g for a in node.attribute if a.name == b) for b in ("then_branch", "else_branch"))
    assert [list(t.dims) for t in then_g.initializer if t.name.startswith("w_fast")] == [[5, 8, 1, 1]]
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in then_g.initializer}
    assert [v.tolist() for k, v in consts.items() if k.startswith("t_shape")] == [[-1, 80]]
    else_consts = {t.name: onnx.numpy_helper.to_array(t) for t in else_g.initializer}
    else_consts.update({n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in else_g.node
                        if n.op_type == "Constant"})
    assert sorted(v.shape for k, v in else_consts.items() if k.startswith("w_back")) == [(5, 6, 1, 1)]
    assert [v.tolist() for k, v in else_consts.items() if k.startswith("e_shape")] == [[-1, 80]]
    infos = {v.name: _dims(v) for g in (then_g, else_g) for v in list(g.value_info) + list(g.output)}
    assert infos["t_act"] == infos["e_back"] == ["N", 5, 4, 4] and infos["t_out"] == ["N", 80]
    assert [list(t.dims) for t in model.graph.initializer if t.name.startswith("w_fc")] == [[5, 80]]


def test_loop_state_width_is_rewritten_in_the_body_and_in_its_initial_value():
    dg = op.analyse_model(control_flow.recurrent_loop_model())
    g = dg.prunable_groups()[0]
    assert {ChannelAxis(n, 1) for n in ("h0", "h", "h_new", "h_step", "h_final")} | {
        ChannelAxis("steps", 2), ChannelAxis("wh", 0), ChannelAxis("wh", 1)} <= set(g.members)
    model = checked_prune(dg, {g.id: [0, 5, 9]}).model
    body = next(a.g for n in model.graph.node if n.op_type == "Loop" for a in n.attribute)
    assert {t.name: list(t.dims) for t in body.initializer if t.name.startswith(("wh", "wx", "b"))} == {
        "wh": [7, 7], "wx": [6, 7], "b": [7]}
    assert _dims(next(i for i in body.input if i.name == "h")) == ["N", 7]
    assert {v.name: _dims(v) for v in body.value_info}["pre_b"] == ["N", 7]
    sizes = [onnx.numpy_helper.to_array(t).tolist() for t in model.graph.initializer if t.name.startswith("ten")]
    assert sizes == [[7]]  # the ConstantOfShape target of the initial state


def test_loop_and_scan_macs_count_the_body_once_per_known_trip():
    """Loop's trip count and Scan's length are dynamic here: the body counts once (documented); with a static
    sequence length Scan counts it once per step."""
    loop = op.analyse_model(control_flow.recurrent_loop_model())
    scan = op.analyse_model(control_flow.recurrent_scan_model())
    cell, head = 6 * 10 + 10 * 10, 10 * 3
    assert count_macs(loop.graph) == count_macs(scan.graph) == cell + head
    fixed = op.analyse_model(control_flow.recurrent_scan_model(), input_shapes={"x": [1, 7, 6]})
    assert count_macs(fixed.graph) == 7 * cell + head


@pytest.mark.parametrize("criterion", ["activation", "wanda"])
def test_calibration_criteria_and_reconstruction_run_past_body_tensors(criterion):
    """Body activations cannot be collected (onnxruntime outputs only the main graph's tensors): statistics skip
    them, the groups are scored by their visible members, and reconstruction refits the consumers outside."""
    calib = {"x": np.random.default_rng(0).standard_normal((48, 7, 6)).astype(np.float32)}
    pruned = op.prune(control_flow.recurrent_loop_model(), ratio=0.5, criterion=criterion, calib=calib)
    assert pruned.plan.groups and pruned.report["reconstruction"]
    assert [layer["op"] for layer in pruned.report["reconstruction"]["layers"]] == ["Gemm"]
