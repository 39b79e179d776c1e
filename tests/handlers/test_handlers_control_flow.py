"""If, Loop and Scan: their bodies are analysed like the main graph, and what crosses a body's boundary is coupled
(If outputs = branch outputs; Loop/Scan state = itself; scan inputs/outputs without their scan axis); weights inside
bodies are pruned, the mask oracle zeroes inside bodies, nested bodies work, a body tensor the loader cannot type
blocks its groups naming the control-flow node, and MACs count bodies once per run (If: its larger branch)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

import onnxprune as op
from onnxprune.analysis.stats import count_macs, count_params
from onnxprune.axes import ChannelAxis
from onnxprune.validation.oracle import compare
from tests.support.checked import checked_prune
from tests.support.handlers_util import analyse, group_of, header

IF_TWO_CONVS = header() + """
agraph (float[N,3,8,8] x, bool cond) => (float[N,2,8,8] y) <float[4,3,1,1] w, float[4,3,3,3] w1, float[2,4,1,1] w2> {
  z = If (cond) <then_branch = then_g () => (float[N,4,8,8] t) { t = Conv (x, w) },
                 else_branch = else_g () => (float[N,4,8,8] e) { c = Conv <pads = [1, 1, 1, 1]> (x, w1)
                                                                  e = Relu (c) }>
  y = Conv (z, w2)
}"""


def _body(model: onnx.ModelProto, op_type: str, attr: str) -> onnx.GraphProto:
    node = next(n for n in model.graph.node if n.op_type == op_type)
    return next(a.g for a in node.attribute if a.name == attr)


def _oracle_passes(dg: op.DependencyGraph, plan: dict, feeds: list[dict]) -> bool:
    pruned = checked_prune(dg, plan)
    return compare(op.masked_model(dg, plan), pruned.exported, feeds=feeds).passed


def _feeds(x_shape, seed: int = 0, **flags) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal(x_shape).astype(np.float32), **{k: np.array(bool(v)) for k, v in flags.items()}}


def test_if_couples_its_output_with_both_branches_and_prunes_their_weights():
    dg = analyse(IF_TWO_CONVS)
    g = group_of(dg, "w2", 1)
    assert g.prunable and {("w", 0), ("w1", 0), ("t", 1), ("e", 1), ("c", 1), ("z", 1)} <= {
        (a.tensor, a.axis) for a in g.members}
    assert ChannelAxis("cond", 0) not in dg.record.blocks  # the condition is not coupled with anything
    feeds = [_feeds((2, 3, 8, 8), cond=True), _feeds((3, 3, 8, 8), seed=1, cond=False)]
    assert _oracle_passes(dg, {g.id: [0, 2]}, feeds)
    model = checked_prune(dg, {g.id: [0, 2]}).model
    then_w = {t.name: list(t.dims) for t in _body(model, "If", "then_branch").initializer}
    else_w = {t.name: list(t.dims) for t in _body(model, "If", "else_branch").initializer}
    assert list(then_w.values()) == [[2, 3, 1, 1]] and list(else_w.values()) == [[2, 3, 3, 3]]


def test_the_oracle_zeroes_inside_bodies():
    """The masked model masks body tensors where the body makes them (so it differs from the original)."""
    dg = analyse(IF_TWO_CONVS)
    plan = {group_of(dg, "w2", 1).id: [1]}
    masked = op.masked_model(dg, plan).proto
    for branch, tensor in (("then_branch", "t"), ("else_branch", "c")):
        assert tensor in [n.input[1] for n in _body(masked, "If", branch).node if n.op_type == "Where"], branch
    assert not compare(op.masked_model(dg, plan), op.masked_model(dg, {}),
                       feeds=[_feeds((2, 3, 8, 8), cond=False)]).passed


def test_if_branches_of_different_widths_block_the_if_output():
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x, bool cond) => (float[N,2,8,8] y) <float[4,3,1,1] w, float[6,3,1,1] w1,
                                                                float[2,4,1,1] w2> {
      z = If (cond) <then_branch = then_g () => (float[N,4,8,8] t) { t = Conv (x, w) },
                     else_branch = else_g () => (float[N,6,8,8] e) { e = Conv (x, w1) }>
      y = Relu (z)
    }""".replace("float[N,2,8,8] y", "float[N,?,8,8] y"))
    reasons = group_of(dg, "w", 0).blocked_reasons + group_of(dg, "w1", 0).blocked_reasons
    assert any("If node" in r and "couples it with" in r for r in reasons), reasons


def test_nested_ifs_and_a_weight_shared_inside_and_outside_a_body():
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x, bool c1, bool c2) => (float[N,2,8,8] y) <float[4,3,1,1] w, float[4,4,1,1] wa,
                                                                       float[2,4,1,1] w2> {
      h = Conv (x, w)
      o = Conv (h, wa)
      z = If (c1) <then_branch = g1 () => (float[N,4,8,8] a) {
            a = If (c2) <then_branch = g2 () => (float[N,4,8,8] a) { b = Conv (h, wa)
                                                                       a = Relu (b) },
                         else_branch = g3 () => (float[N,4,8,8] a) { a = Neg (h) }>
          },
          else_branch = g4 () => (float[N,4,8,8] a) { a = Add (o, h) }>
      y = Conv (z, w2)
    }""")
    g = group_of(dg, "w", 0)
    assert g.prunable and ChannelAxis("b", 1) in g.members  # through both levels
    assert len({ax.tensor for ax in g.members if ax.tensor.startswith("a")}) == 4  # the four 'a's are kept apart
    feeds = [_feeds((2, 3, 8, 8), seed=k, c1=c1, c2=c2) for k, (c1, c2) in enumerate([(1, 1), (1, 0), (0, 1), (0, 0)])]
    assert _oracle_passes(dg, {g.id: [1, 2]}, feeds)


LOOP = header() + """
agraph (float[N,3,8,8] x) => (float[N,2,8,8] y, float[N,2,8,8] ys) <float[4,3,1,1] w, float[4,4,1,1] wb,
                                                                 float[2,4,1,1] w2, float[2,4,1,1] w3, int64 trip> {
  h = Conv (x, w)
  go = Constant <value = bool {1}> ()
  acc, steps = Loop (trip, go, h) <body = body_g (int64 i, bool c, float[N,4,8,8] a) =>
                                         (bool c_out, float[N,4,8,8] a_out, float[N,4,8,8] s) {
      c_out = Identity (c)
      p = Conv (a, wb)
      a_out = Tanh (p)
      s = Relu (a_out)
  }>
  y = Conv (acc, w2)
  m = ReduceMean <axes = [0], keepdims = 0> (steps)
  ys = Conv (m, w3)
}"""


def test_loop_carried_state_and_scan_outputs_are_coupled_and_pruned():
    dg = analyse(LOOP, trip=np.array(3, dtype=np.int64))
    g = group_of(dg, "w", 0)
    members = {(a.tensor, a.axis) for a in g.members}
    assert g.prunable and {("h", 1), ("a", 1), ("a_out", 1), ("acc", 1), ("s", 1), ("steps", 2), ("wb", 0),
                           ("wb", 1), ("w2", 1), ("w3", 1)} <= members
    assert ChannelAxis("steps", 0) in dg.nonchannel  # the iteration axis
    assert _oracle_passes(dg, {g.id: [0, 3]}, [_feeds((2, 3, 8, 8)), _feeds((5, 3, 8, 8), seed=1)])
    assert count_macs(dg.graph) == 4 * 3 * 64 + 3 * (4 * 4 * 64) + 2 * (2 * 4 * 64)  # body counted 3 times


SCAN = header() + """
agraph (float[N,T,6] x) => (float[N,2] y, float[N,T,2] ys) <float[6,8] wx, float[8,8] wh, float[2,8] w2,
                                                           float[8,2] w3> {
  z = Constant <value = float[1,8] {0, 0, 0, 0, 0, 0, 0, 0}> ()
  hN, steps = Scan (z, x) <num_scan_inputs = 1, scan_input_axes = [1], scan_output_axes = [-2],
                            body = cell (float[1,8] h, float[N,6] x_t) => (float[1,8] h_new, float[N,8] out) {
      xw = MatMul (x_t, wx)
      hw = MatMul (h, wh)
      out = Tanh (xw)
      pre = Add (hw, hw)
      h_new = Tanh (pre)
  }>
  steps_last = ReduceMax <axes = [1], keepdims = 0> (steps)
  y = Gemm <transB = 1> (steps_last, w2)
  ys = MatMul (steps, w3)
}"""


def test_scan_couples_slices_with_the_scan_axis_removed():
    dg = analyse(SCAN)
    g = group_of(dg, "wx", 1)
    assert g.prunable and {("out", 1), ("steps", 2), ("w3", 0), ("w2", 1)} <= {(a.tensor, a.axis) for a in g.members}
    assert ChannelAxis("steps", 1) in dg.nonchannel and ChannelAxis("x", 1) in dg.nonchannel
    state = group_of(dg, "wh", 1)  # the carried state [1, 8] is its own group: h, h_new, hN, wh rows and columns
    assert {("h", 1), ("h_new", 1), ("hN", 1), ("wh", 0), ("z", 1)} <= {(a.tensor, a.axis) for a in state.members}
    assert group_of(dg, "wx", 0).blocked_reasons == ["graph input 'x' axis 2 is protected"]
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((n, t, 6)).astype(np.float32)} for n, t in ((2, 5), (3, 9))]
    assert _oracle_passes(dg, {g.id: [1, 4, 5]}, feeds)


def test_a_body_tensor_without_a_shape_blocks_its_groups_naming_the_node():
    """A Reshape inside a branch to a target read from the outer scope at run time: its output has no known rank."""
    dg = analyse(header() + """
    agraph (float[N,3,8,8] x, bool cond, int64[K] target) => (float[N,2,8,8] y) <float[4,3,1,1] w,
                                                                                float[2,4,1,1] w2> {
      h = Conv (x, w)
      z = If (cond) <then_branch = then_g () => (float[N,4,8,8] t) { r = Reshape (h, target)
                                                                      t = Relu (r) },
                     else_branch = else_g () => (float[N,4,8,8] e) { e = Neg (h) }>
      y = Conv (z, w2)
    }""")
    reasons = group_of(dg, "w", 0).blocked_reasons
    assert any("'r' is unknown in then_branch of If node '" in r for r in reasons), reasons


def test_a_body_no_handler_couples_is_blocked_at_its_boundary_and_prunable_inside():
    """A custom op with a body (built directly, with the body's shapes: ONNX does not infer inside custom ops): what
    crosses the body's boundary is blocked, a group wholly inside it stays prunable."""
    rng = np.random.default_rng(0)
    x = gs.Variable("x", dtype=np.float32, shape=["N", 3, 8, 8])
    xb, u, v, t = (gs.Variable(n, dtype=np.float32, shape=["N", c, 8, 8]) for n, c in (("xb", 3), ("u", 5),
                                                                                      ("v", 5), ("t", 4)))
    wi, wo = (gs.Constant(n, rng.standard_normal(s).astype(np.float32)) for n, s in (("wi", (5, 3, 1, 1)),
                                                                                     ("wo", (4, 5, 1, 1))))
    body = gs.Graph(nodes=[gs.Node("Conv", "ci", inputs=[xb, wi], outputs=[u]), gs.Node("Relu", "r", inputs=[u],
                                                                                       outputs=[v]),
                           gs.Node("Conv", "co", inputs=[v, wo], outputs=[t])], inputs=[xb], outputs=[t], name="b")
    z = gs.Variable("z", dtype=np.float32, shape=["N", 4, 8, 8])
    node = gs.Node("Wrap", "wrap", attrs={"body": body}, inputs=[x], outputs=[z], domain="custom")
    dg = op.analyse(gs.Graph(nodes=[node], inputs=[x], outputs=[z], opset=17), 17)
    assert [g.root for g in dg.prunable_groups()] == [ChannelAxis("wi", 0)]
    assert any("input or output of the body of Wrap node 'wrap'" in r for r in group_of(dg, "wo", 0).blocked_reasons)


def test_if_macs_count_the_larger_branch_and_params_count_both():
    dg = analyse(IF_TWO_CONVS)
    then_macs, else_macs, head = 4 * 3 * 64, 4 * 3 * 9 * 64, 2 * 4 * 64
    assert count_macs(dg.graph) == max(then_macs, else_macs) + head
    assert count_params(dg.graph) == 4 * 3 + 4 * 27 + 2 * 4


def test_a_body_that_does_not_fit_its_node_blocks_the_node_and_the_body_boundary():
    """An If whose else branch returns two values for its one output (built directly: the loader would refuse it)."""
    x = gs.Variable("x", dtype=np.float32, shape=["N", 4])
    cond = gs.Variable("cond", dtype=np.bool_, shape=[])
    w = gs.Constant("w", np.ones((4, 4), np.float32))
    z = gs.Variable("z", dtype=np.float32, shape=["N", 4])
    t, e, e2 = (gs.Variable(n, dtype=np.float32, shape=["N", 4]) for n in ("t", "e", "e2"))
    then_g = gs.Graph(nodes=[gs.Node("MatMul", "mm_t", inputs=[x, w], outputs=[t])], outputs=[t], name="then_g")
    else_g = gs.Graph(nodes=[gs.Node("Relu", "r", inputs=[x], outputs=[e]), gs.Node("Neg", "n", inputs=[x],
                                                                                    outputs=[e2])],
                      outputs=[e, e2], name="else_g")
    node = gs.Node("If", "if", attrs={"then_branch": then_g, "else_branch": else_g}, inputs=[cond], outputs=[z])
    graph = gs.Graph(nodes=[node], inputs=[x, cond], outputs=[z], opset=17)
    dg = op.analyse(graph, 17, op.AnalysisOptions(protect_io=False))
    reasons = dg.record.blocks[ChannelAxis("z", 1)]
    assert any("If handler cannot read this node" in r and "expected 0 and 1" in r for r in reasons), reasons
    reasons = dg.record.blocks[ChannelAxis("t", 1)]
    assert any("input or output of the then_branch of If node 'if'" in r for r in reasons), reasons
