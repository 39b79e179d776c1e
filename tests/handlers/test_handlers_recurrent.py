"""LSTM, GRU and RNN handlers: hidden unit k is row k of every gate block, column k of R, entry k of states."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxprune as op
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

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
H = 5


def _recurrent(op_type: str, direction: str = "forward", extra: str = "", inputs: str = "", layout: int = 0,
               batch: str = "N"):
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[op_type]
    seq = f"{batch},T" if layout else f"T,{batch}"
    return analyse(header(14) + f"""
    agraph (float[{seq},3] x) => (float[{seq},2] y) <int64[3] merge, float[3,4] wi, float[{dirs},{g * H},4] W,
        float[{dirs},{g * H},{H}] R, float[{dirs},{2 * g * H}] B, float[{dirs * H},2] wo{extra}> {{
      a = MatMul (x, wi)
      Y, Yh = {op_type} <hidden_size={H}, direction="{direction}", layout={layout}> (a, W, R, B{inputs})
      t = Transpose <perm={[0, 1, 2, 3] if layout else [0, 2, 1, 3]}> (Y)
      s = Reshape (t, merge)
      y = MatMul (s, wo)
    }}""", merge=np.array([0, 0, dirs * H]))


@pytest.mark.parametrize("op_type", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_hidden_unit_k_is_row_k_of_every_gate(op_type, direction):
    dg = _recurrent(op_type, direction)
    gates = GATES[op_type]
    g = group_of(dg, "R", 2)
    assert g.size == H and g.exact
    assert table(g, "W", 1) == [[k + j * H for j in range(gates)] for k in range(H)]
    assert table(g, "R", 1) == table(g, "W", 1)
    assert table(g, "B", 1) == [[k + j * H for j in range(2 * gates)] for k in range(H)]
    assert table(g, "Y", 3) == [[k] for k in range(H)] and table(g, "Yh", 2) == [[k] for k in range(H)]
    expect_wo = [[k] for k in range(H)] if direction == "forward" else [[k, H + k] for k in range(H)]
    assert table(g, "wo", 0) == expect_wo  # both directions lose unit k
    inputs = group_of(dg, "W", 2)
    assert member_axes(inputs) == {("wi", 1), ("a", 2), ("W", 2)}
    check_all_prunable(dg, expect=2)
    model = checked_prune(dg, {g.id: [0, 3]}).model
    assert attribute(model, op_type, "hidden_size") == H - 2
    assert initializer(model, "R").shape == (2 if direction == "bidirectional" else 1, gates * (H - 2), H - 2)


def test_lstm_states_and_peepholes_follow_the_unit():
    dg = _recurrent("LSTM", extra=f", float[1,2,{H}] h0, float[1,2,{H}] c0, float[1,{3 * H}] P",
                    inputs=", , h0, c0, P", batch="2")
    g = group_of(dg, "R", 2)
    assert table(g, "P", 1) == [[k, H + k, 2 * H + k] for k in range(H)]
    assert table(g, "h0", 2) == [[k] for k in range(H)] and ("c0", 2) in g.members
    check_all_prunable(dg, expect=2)


def test_layout_1_batch_first():
    dg = _recurrent("GRU", layout=1)
    g = group_of(dg, "R", 2)
    assert table(g, "Y", 3) == [[k] for k in range(H)] and ("Yh", 2) in g.members
    model = op.apply_plan(dg, {g.id: [2]}).model  # unchecked: onnxruntime has no kernel for layout=1
    onnx.checker.check_model(model, full_check=True)
    assert attribute(model, "GRU", "hidden_size") == H - 1


def test_initial_state_from_a_graph_input_protects_the_units():
    dg = analyse(header(14) + f"""
    agraph (float[T,N,3] x, float[1,N,{H}] h0) => (float[T,1,N,{H}] y) <float[1,{3 * H},3] W,
                                                                      float[1,{3 * H},{H}] R> {{
      y, yh = GRU <hidden_size={H}> (x, W, R, , , h0)
    }}""")
    g = group_of(dg, "R", 2)
    assert not g.prunable and any("graph input 'h0' axis 2" in r for r in g.blocked_reasons)


@pytest.mark.parametrize("op_type,attrs", [("GRU", ", linear_before_reset=1"), ("LSTM", "")])
def test_only_the_final_state_used(op_type, attrs):
    g = GATES[op_type]
    dg = analyse(header(14) + f"""
    agraph (float[T,N,3] x) => (float[N,2] y) <float[1,{g * H},3] W, float[1,{g * H},{H}] R, float[1,{2 * g * H}] B,
                                              float[{H},2] w2, int64[1] ax> {{
      , Yh = {op_type} <hidden_size={H}{attrs}> (x, W, R, B)
      s = Squeeze (Yh, ax)
      y = MatMul (s, w2)
    }}""", ax=np.array([0]))
    unit = group_of(dg, "R", 2)
    assert member_axes(unit) == {("W", 1), ("R", 1), ("R", 2), ("B", 1), ("Yh", 2), ("s", 1), ("w2", 0)}
    check_all_prunable(dg, expect=1)
