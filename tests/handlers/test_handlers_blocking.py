"""What blocks a group: ops without a handler, custom domains, graph inputs/outputs, subgraphs of ops whose handler
does not couple their bodies (If/Loop/Scan bodies are coupled: tests/handlers/test_handlers_control_flow.py);
blocking stays local to the groups that touch the blocked axes."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import onnx
import pytest

import onnxprune as op
import onnxprune.analysis  # noqa: F401  (registers the handler families)
from onnxprune.axes import ChannelAxis
from onnxprune.handlers import registered_op_types
from tests.support.checked import checked_prune
from tests.support.handlers_util import analyse, check_all_prunable, group_of, header, initializer

TWO_BRANCHES = """
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y, {out}) <float[4,3,1,1] w, float[5,3,1,1] wb,
                                                             float[2,5,1,1] w2{decl}> {{
      h = Conv (x, w)
      {line}
      b = Conv (x, wb)
      y = Conv (b, w2)
    }}"""


@pytest.mark.parametrize("line,out,decl,consts", [
    ("v, i = TopK <axis=1> (h, k)", "float[N,2,8,8] v", ", int64[1] k", {"k": np.array([2])}),
    ("nz = NonZero (h)", "int64[4,M] nz", "", {}),
])
def test_op_without_a_handler_blocks_its_groups_only(line, out, decl, consts):
    dg = analyse(header() + TWO_BRANCHES.format(line=line, out=out, decl=decl), **consts)
    op_type = line.split("=")[1].split()[0]
    g = group_of(dg, "w", 0)
    assert not g.prunable
    assert any(r.startswith(f"op '{op_type}' is not supported (opaque) ({op_type} node '") for r in g.blocked_reasons)
    assert group_of(dg, "wb", 0).prunable  # the other branch is untouched
    check_all_prunable(dg, expect=1)


def test_custom_domain_op_is_opaque():
    text = header() + TWO_BRANCHES.format(line="c = custom.Mystery (h)\n      z = Relu (c)", out="float[N,4,8,8] z",
                                          decl=", float[N,4,8,8] c")
    text = text.replace('["" : 17]', '["" : 17, "custom" : 1]')
    dg = analyse(text)
    g = group_of(dg, "w", 0)
    assert not g.prunable and any("op 'custom::Mystery' is not supported" in r for r in g.blocked_reasons)
    assert group_of(dg, "wb", 0).prunable


def test_graph_input_and_output_axes_are_protected_unless_allowed():
    text = header() + """
    agraph (float[N,3,8,8] x) => (float[N,4,8,8] y) <float[4,3,1,1] w> {
      y = Conv (x, w)
    }"""
    dg = analyse(text)
    assert not dg.prunable_groups()
    assert group_of(dg, "w", 0).blocked_reasons == ["graph output 'y' axis 1 is protected"]
    assert group_of(dg, "w", 1).blocked_reasons == ["graph input 'x' axis 1 is protected"]
    assert "N" not in str(group_of(dg, "w", 0).blocked_reasons)
    allowed = analyse(text, options=op.AnalysisOptions(allowed_io_axes={ChannelAxis("y", 1)}))
    g = group_of(allowed, "w", 0)
    assert g.prunable
    model = checked_prune(allowed, {g.id: [0]}).model
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 3
    anything = analyse(text, options=op.AnalysisOptions(protect_io=False))
    assert len(anything.prunable_groups()) == 2


def test_pruning_a_blocked_group_raises_with_the_reason():
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x) => (float[N,4,8,8] y) <float[4,3,1,1] w> {
      y = Conv (x, w)
    }""")
    g = group_of(dg, "w", 0)
    with pytest.raises(op.PruneError, match="graph output 'y' axis 1 is protected"):
        checked_prune(dg, {g.id: [0]})


SUBGRAPH_OPS = {
    "If": """
      z = If (cond) <then_branch = then_g () => (float[N,4,8,8] t) { t = Relu (h) },
                     else_branch = else_g () => (float[N,4,8,8] e) { e = Neg (h) }>""",
    "Loop": """
      z = Loop (trip, cond, h) <body = body_g (int64 it, bool c_in, float[N,4,8,8] acc) =>
                                (bool c_out, float[N,4,8,8] acc_out) {
          c_out = Identity (c_in)
          acc_out = Add (acc, h)
      }>""",
    "custom.Wrap": """
      z = custom.Wrap (cond) <body = body_g () => (float[N,4,8,8] t) { t = Relu (h) }>""",
}


@pytest.mark.parametrize("op_type", ["If", "Loop", "custom.Wrap"])
def test_subgraph_reading_an_outer_tensor_couples_it_or_blocks_it(op_type):
    """If and Loop couple the outer tensor read in their body with their output (here a protected graph output);
    a node with a body that no handler couples blocks what its body reads."""
    dg = analyse((header() + """
    agraph (float[N,3,8,8] x, bool cond) => (float[N,2,8,8] y, float[N,4,8,8] z) <float[4,3,1,1] w,
                                              float[5,3,1,1] wb, float[2,5,1,1] w2, int64 trip> {
      h = Conv (x, w)
      """ + SUBGRAPH_OPS[op_type] + """
      b = Conv (x, wb)
      y = Conv (b, w2)
    }""").replace('["" : 17]', '["" : 17, "custom" : 1]'), trip=np.array(2))
    g = group_of(dg, "w", 0)
    assert not g.prunable
    if op_type == "custom.Wrap":
        assert any(r.startswith("read inside the subgraph of Wrap node '") for r in g.blocked_reasons)
    else:
        assert ChannelAxis("z", 1) in g.members and "graph output 'z' axis 1 is protected" in g.blocked_reasons
    assert group_of(dg, "wb", 0).prunable


def test_if_output_consumed_by_a_conv_couples_both_branches():
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x, bool cond) => (float[N,2,8,8] y) <float[4,3,1,1] w, float[4,3,1,1] w1,
                                                                float[2,4,1,1] w2> {
      z = If (cond) <then_branch = then_g () => (float[N,4,8,8] t) { t = Conv (x, w) },
                     else_branch = else_g () => (float[N,4,8,8] e) { e = Conv (x, w1) }>
      y = Conv (z, w2)
    }""")
    g = group_of(dg, "w2", 1)
    assert g.prunable and {ChannelAxis("w", 0), ChannelAxis("w1", 0), ChannelAxis("z", 1)} <= set(g.members)
    assert [g.root.tensor for g in dg.prunable_groups()] == ["w"]


def test_unknown_rank_blocks_with_a_hint():
    dg = analyse((header() + """
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y, float[N,4,8,8] z) <float[4,3,1,1] w, float[5,3,1,1] wb,
                                                                       float[2,5,1,1] w2> {
      h = Conv (x, w)
      c = custom.Mystery (h)
      z = Relu (c)
      b = Conv (x, wb)
      y = Conv (b, w2)
    }""").replace('["" : 17]', '["" : 17, "custom" : 1]'))
    assert any("shape of tensor 'c' is unknown; give static input shapes" in r
               for r in dg.record.blocks[ChannelAxis("z", 1)])
    assert not group_of(dg, "w", 0).prunable and len(dg.prunable_groups()) == 1
    model = op.apply_plan(dg, {group_of(dg, "wb", 0).id: [0, 1]}).model  # unchecked: no kernel for custom ops
    onnx.checker.check_model(model)
    assert initializer(model, "w2").shape == (2, 3, 1, 1)


def test_every_registered_op_type_appears_in_a_handler_test():
    from onnxprune.op_handlers.elementwise import BINARY, UNARY
    from onnxprune.op_handlers.pooling import OTHER_REDUCE, POOLS, SUM_LIKE

    parametrised = set(UNARY) | set(BINARY) | set(POOLS) | set(SUM_LIKE) | set(OTHER_REDUCE)
    text = "".join(path.read_text() for path in pathlib.Path(__file__).parent.glob("test_handlers_*.py"))
    untested = [t for t in registered_op_types() if t not in parametrised and not re.search(rf"\b{t}\b", text)]
    assert not untested
