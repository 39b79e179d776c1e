"""Loops as torch's TorchScript exporter writes them (issue 8 follow-up): ``models.control_flow.ScriptedTanhRNN``, a
Python ``for`` over time scripted with ``torch.jit.script``, becomes an ONNX Loop whose carried state the exporter
declares with placeholder dims ('h.13_dim_1') and whose final value ONNX's inference leaves shapeless;
``onnxprune.ir.loop_state`` types it, so the hidden width prunes across the body (checker, onnxruntime and the
mask oracle at two (batch, time) sizes), and MACs count the body once per time step at the shapes used.

Not done yet: the variant that collects every step's state in a list (SequenceEmpty / SequenceInsert in the body /
ConcatFromSequence after the Loop) stays blocked with the sequence ops' reason."""

from __future__ import annotations

import onnx
import pytest
from onnxprune.models import control_flow

import onnxprune as op
from onnxprune.ir.loading import load
from tests.support.real_export_check import prune_and_check

SIZES = [{"batch": 2, "time": 7}, {"batch": 3, "time": 19}]


@pytest.fixture(scope="module")
def scripted_rnn(tmp_path_factory):
    out = tmp_path_factory.mktemp("loops")
    return lambda stacked: control_flow.export_scripted_rnn(out / f"rnn_stacked{int(stacked)}.onnx", stacked)


def test_scripted_rnn_loop_prunes_its_hidden_width_and_matches_the_oracle(scripted_rnn, tmp_path):
    path = scripted_rnn(False)
    assert [n.op_type for n in onnx.load(path).graph.node].count("Loop") == 1
    pruned = prune_and_check(path, tmp_path, SIZES, ratio=0.5)
    roots = {g.root.tensor for g in pruned.plan.depgraph.prunable_groups()}
    assert len(roots) == 1 and pruned.plan.groups, roots  # the hidden width, across the Loop body
    macs = pruned.report["macs"]
    assert macs["at"] == "x=1x16x6", macs  # time is symbolic: counted at the shapes used
    assert macs["before"] == 16 * (6 * 10 + 10 * 10) + 10 * 3, macs  # the body once per time step
    assert macs["after"] == 16 * (6 * 5 + 5 * 5) + 5 * 3, macs


def test_scripted_rnn_state_is_typed_from_its_initial_value(scripted_rnn):
    loaded = load(scripted_rnn(False)).graph
    loop = next(n for n in loaded.nodes if n.op == "Loop")
    body = loop.attrs["body"]
    assert body.inputs[2].shape[1] == 10 and body.outputs[1].shape[1] == 10, (body.inputs[2], body.outputs[1])
    assert loop.outputs[0].shape is not None and loop.outputs[0].shape[1] == 10, loop.outputs[0]


def test_scripted_rnn_with_stacked_steps_is_refused_with_the_sequence_reason(scripted_rnn):
    dg = op.analyse_model(scripted_rnn(True))
    assert not dg.prunable_groups()
    reasons = [r for g in dg.channel_groups() for r in g.blocked_reasons]
    assert any("SequenceInsert" in r or "ConcatFromSequence" in r for r in reasons), reasons
