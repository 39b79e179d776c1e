"""Elementwise handlers: every registered unary op keeps every axis; every n-ary op follows numpy broadcasting."""

from __future__ import annotations

import numpy as np
import pytest
from onnxprune.op_handlers.elementwise import BINARY, UNARY

from tests.support.checked import checked_prune
from tests.support.handlers_util import analyse, check_all_prunable, group_of, header, initializer, member_axes, table

# Per op: the lines that turn h (conv output, any real) or s = Sigmoid(h) (in (0, 1)) into float u.
UNARY_LINES = {
    "Log": "u = Log (s)", "Sqrt": "u = Sqrt (s)", "Reciprocal": "u = Reciprocal (s)", "Asin": "u = Asin (s)",
    "Acos": "u = Acos (s)", "Atanh": "u = Atanh (s)", "Acosh": "p = Add (s, one)\n u = Acosh (p)",
    "Cast": "d = Cast <to=11> (h)\n u = Cast <to=1> (d)", "CastLike": "u = CastLike (h, one)",
    "Not": "b = Greater (h, one)\n n = Not (b)\n u = Cast <to=1> (n)",
    "IsNaN": "n = IsNaN (h)\n f = Cast <to=1> (n)\n u = Add (h, f)",
    "IsInf": "n = IsInf (h)\n f = Cast <to=1> (n)\n u = Add (h, f)",
    "Clip": "u = Clip (h, lo, hi)", "Dropout": "u, m = Dropout (h)",
}
ARITHMETIC = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum", "Mod", "PRelu")
COMPARE = ("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual")
LOGICAL = ("And", "Or", "Xor")
BITWISE = ("BitwiseAnd", "BitwiseOr")


def _model(lines: str, extra: str = "", opset: int = 20, **consts):
    return analyse(header(opset, 9) + f"""
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[4,3,1,1] w, float[2,4,1,1] w2, float[1] one,
                                                     float lo, float hi, float[4,1,1] c{extra}> {{
      h = Conv (x, w)
      s = Sigmoid (h)
      {lines}
      y = Conv (u, w2)
    }}""", one=np.array([1.0]), lo=np.array(-0.5), hi=np.array(0.5), **consts)


@pytest.mark.parametrize("op_type", UNARY)
def test_unary_op_keeps_the_channel(op_type):
    dg = _model(UNARY_LINES.get(op_type, f"u = {op_type} (h)"))
    g = group_of(dg, "w", 0)
    assert g.exact and member_axes(g) >= {("w", 0), ("h", 1), ("u", 1), ("w2", 1)}
    assert table(g, "u", 1) == [[0], [1], [2], [3]]
    check_all_prunable(dg, expect=1)


@pytest.mark.parametrize("op_type", BINARY)
def test_binary_op_broadcasts_a_per_channel_constant(op_type):
    if op_type in ARITHMETIC:
        attrs = " <fmod=1>" if op_type == "Mod" else ""
        lines = f"u = {op_type}{attrs} ({'s' if op_type == 'Pow' else 'h'}, c)"
    elif op_type in COMPARE:
        lines = f"b = {op_type} (h, c)\n u = Where (b, h, s)"
    elif op_type in LOGICAL:
        lines = f"b1 = Greater (h, c)\n b2 = Less (s, one)\n b = {op_type} (b1, b2)\n u = Where (b, h, s)"
    elif op_type in BITWISE:
        lines = f"i = Cast <to=7> (h)\n k = {op_type} (i, ci)\n u = Cast <to=1> (k)"
    else:
        assert op_type == "Where"
        lines = "b = Greater (h, one)\n u = Where (b, c, s)"
    dg = _model(lines, extra=", int64[4,1,1] ci", ci=np.array([3, 5, 6, 7]).reshape(4, 1, 1))
    g = group_of(dg, "w", 0)
    assert ("u", 1) in g.members and g.exact
    if op_type not in BITWISE:
        assert table(g, "c", 0) == [[0], [1], [2], [3]]
    else:
        assert table(g, "ci", 0) == [[0], [1], [2], [3]]
    check_all_prunable(dg, expect=1)


def test_every_elementwise_op_type_has_a_test_form():
    assert set(UNARY_LINES) <= set(UNARY)
    assert set(ARITHMETIC + COMPARE + LOGICAL + BITWISE + ("Where",)) == set(BINARY)


@pytest.mark.parametrize("slope", ["4,1,1", "1,4,1,1", "1"])
def test_prelu_slope_shapes(slope):
    dg = analyse(header() + f"""
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[4,3,1,1] w, float[{slope}] sl, float[2,4,1,1] w2> {{
      h = Conv (x, w)
      u = PRelu (h, sl)
      y = Conv (u, w2)
    }}""")
    g = group_of(dg, "w", 0)
    assert (("sl", len(slope.split(",")) - 3) in g.members) == (slope != "1")
    check_all_prunable(dg, expect=1)
    if slope != "1":
        assert initializer(checked_prune(dg, {g.id: [0]}).model, "sl").size == 3


def test_nhwc_slope_on_the_last_axis():
    dg = analyse(header() + """
    agraph (float[N,8,8,3] x) => (float[N,8,8,2] y) <float[3,4] w, float[1,1,4] sl, float[4,2] w2> {
      h = MatMul (x, w)
      u = PRelu (h, sl)
      y = MatMul (u, w2)
    }""")
    g = group_of(dg, "w", 1)
    assert member_axes(g) == {("w", 1), ("h", 3), ("sl", 2), ("u", 3), ("w2", 0)}
    check_all_prunable(dg, expect=1)


@pytest.mark.parametrize("opset,clip", [(6, "Clip <min=-0.5, max=0.5> (h)"), (8, "Clip <min=-0.5> (h)"),
                                        (11, "Clip (h, lo, hi)"), (13, "Clip (h, , hi)")])
def test_clip_bounds_as_attributes_or_inputs(opset, clip):
    dg = analyse(header(opset) + f"""
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[4,3,1,1] w, float lo, float hi, float[2,4,1,1] w2> {{
      h = Conv (x, w)
      u = {clip}
      y = Conv (u, w2)
    }}""", lo=np.array(-0.5), hi=np.array(0.5))
    g = group_of(dg, "w", 0)
    assert member_axes(g) == {("w", 0), ("h", 1), ("u", 1), ("w2", 1)}
    if opset >= 7:
        check_all_prunable(dg, expect=1)
    else:  # onnxruntime runs Conv and Clip at opset 6 but no op the mask oracle could use (Where, Mul)
        assert initializer(checked_prune(dg, {g.id: [0, 2]}).model, "w2").shape == (2, 2, 1, 1)


def test_residual_add_couples_both_branches():
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[4,3,1,1] wa, float[4,3,3,3] wb, float[4,4,1,1] wc,
                                                     float[2,4,1,1] w2> {
      a = Conv (x, wa)
      b = Conv <pads=[1,1,1,1]> (x, wb)
      r = Relu (b)
      c = Conv (r, wc)
      s = Add (a, c)
      y = Conv (s, w2)
    }""")
    g = group_of(dg, "wa", 0)
    assert member_axes(g) == {("wa", 0), ("a", 1), ("wc", 0), ("c", 1), ("s", 1), ("w2", 1)}
    assert table(g, "wc", 0) == [[0], [1], [2], [3]]
    inner = group_of(dg, "wb", 0)
    assert member_axes(inner) == {("wb", 0), ("b", 1), ("r", 1), ("wc", 1)}
    check_all_prunable(dg, expect=2)
