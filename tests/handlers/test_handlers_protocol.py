"""The handler protocol itself: analysis never loads weight values, handlers never branch on the op type or edit
nodes themselves, and the RewriteContext methods they edit through."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import onnx_graphsurgeon as gs
import onnxprune.op_handlers
import pytest
from onnx_graphsurgeon.ir.tensor import LazyValues

from onnxprune.analysis import analyse
from onnxprune.analysis.stats import count_macs
from onnxprune.handlers import RewriteContext, ShapeView
from onnxprune.ir.loading import load
from tests.support.handlers_util import header, make_model

HANDLER_SOURCES = sorted(Path(onnxprune.op_handlers.__file__).parent.glob("*.py"))


class _ValuesForbidden(LazyValues):
    """Lazy values that know their shape and dtype but raise when loaded: stands for a weight too big to read."""

    def __init__(self, name: str, shape, dtype):
        self.name, self.shape, self.dtype = name, tuple(shape), dtype
        self.nbytes = int(np.prod(self.shape)) * np.dtype(dtype).itemsize

    def load(self):
        raise AssertionError(f"the values of weight '{self.name}' were read")


def _forbid_weight_values(graph: gs.Graph) -> list[str]:
    """Make every non-int64 constant of ``graph`` raise when its values are read (int64 ones are shape-like:
    axes, targets, indices, which handlers may read). Returns the names of the constants so guarded."""
    guarded = []
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Constant) and np.dtype(tensor.dtype) != np.int64:
            tensor.values = _ValuesForbidden(tensor.name, tensor.shape, tensor.dtype)
            guarded.append(tensor.name)
    return guarded


CNN = header(opset=17) + """
    agraph (float[N,3,8,8] x) => (float[N,5] y) <float[8,3,3,3] w1, float[8] b1, float[8] bs, float[8] bb,
                                                 float[8] bm, float[8] var, float[8,1,3,3] dw, float[8,4,1,1] gw,
                                                 float[5,8] fc, float[5] fb> {
      c1 = Conv <pads=[1,1,1,1]> (x, w1, b1)
      n1 = BatchNormalization (c1, bs, bb, bm, var)
      r1 = Relu (n1)
      d1 = Conv <group=8, pads=[1,1,1,1]> (r1, dw)
      g1 = Conv <group=2> (d1, gw)
      p = GlobalAveragePool (g1)
      f = Flatten (p)
      y = Gemm <transB=1> (f, fc, fb)
    }"""

TRANSFORMER = header(opset=17) + """
    agraph (int64[2,6] ids) => (float[2,6,4] y) <float[30,16] emb, float[16] ls, float[16] lb, float[16,16] wq,
                                                 float[16,16] wk, float[16,16] wv, float[4,16] wo,
                                                 int64[4] heads, int64[3] merged> {
      e = Gather (emb, ids)
      h = LayerNormalization <axis=-1> (e, ls, lb)
      q = MatMul (h, wq)
      k = MatMul (h, wk)
      v = MatMul (h, wv)
      qh = Reshape (q, heads)
      kh = Reshape (k, heads)
      vh = Reshape (v, heads)
      qt = Transpose <perm=[0,2,1,3]> (qh)
      kt = Transpose <perm=[0,2,3,1]> (kh)
      vt = Transpose <perm=[0,2,1,3]> (vh)
      s = MatMul (qt, kt)
      a = Softmax <axis=-1> (s)
      o = MatMul (a, vt)
      ot = Transpose <perm=[0,2,1,3]> (o)
      om = Reshape (ot, merged)
      m = ReduceMean <axes=[-1]> (om)
      c = Sub (om, m)
      y = Einsum <equation="btd,hd->bth"> (c, wo)
    }"""
TRANSFORMER_CONSTS = {"heads": np.array([2, 6, 2, 8]), "merged": np.array([2, 6, 16])}

LSTM = header(opset=14) + """
    agraph (float[5,2,3] x) => (float[5,2,4] y) <float[1,24,3] w, float[1,24,6] r, float[1,48] b,
                                                 float[4,6] proj> {
      seq, h = LSTM <hidden_size=6> (x, w, r, b)
      sq = Squeeze (seq, one)
      y = MatMul (sq, pt)
      one = Constant <value=int64[1] {1}> ()
      pt = Transpose (proj)
    }"""

QDQ = header(opset=13) + """
    agraph (float[N,3,8,8] x) => (float[N,6,8,8] y) <int8[4,3,3,3] wq, float[4] s1, int8[4] z1, float[4] b,
                                                     int8[6,4,1,1] vq, float[6] s2, int8[6] z2> {
      w = DequantizeLinear <axis=0> (wq, s1, z1)
      c = Conv <pads=[1,1,1,1]> (x, w, b)
      r = Relu (c)
      w2 = DequantizeLinear <axis=0> (vq, s2, z2)
      y = Conv (r, w2)
    }"""


def _qdq_consts() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"wq": rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8),
            "vq": rng.integers(-127, 128, (6, 4, 1, 1)).astype(np.int8),
            "s1": np.full(4, 0.02, np.float32), "s2": np.full(6, 0.02, np.float32),
            "z1": np.zeros(4, np.int8), "z2": np.zeros(6, np.int8)}


@pytest.mark.parametrize("text, consts", [(CNN, {}), (TRANSFORMER, TRANSFORMER_CONSTS), (LSTM, {}),
                                          (QDQ, "qdq")], ids=["cnn", "transformer", "lstm", "qdq"])
def test_analysis_and_macs_never_read_weight_values(text, consts):
    """Analysis and MAC counting must stay cheap on big models: with every weight's values made to raise when read,
    they still succeed and find exactly the groups (and MACs) of the unguarded analysis."""
    model = make_model(text, **(_qdq_consts() if consts == "qdq" else consts))
    reference = load(model)
    expected = analyse(reference.graph, reference.opset)
    guarded = load(model)
    names = _forbid_weight_values(guarded.graph)
    assert len(names) >= 4, names  # the test guards real weights, not nothing
    found = analyse(guarded.graph, guarded.opset)
    assert [g.to_dict() for g in found.channel_groups()] == [g.to_dict() for g in expected.channel_groups()]
    assert any(g.prunable for g in found.channel_groups())
    assert count_macs(guarded.graph) == count_macs(reference.graph) > 0


def test_forbidden_values_do_raise():
    """The guard the test above relies on: reading a guarded weight fails (so the test above can fail)."""
    graph = load(make_model(CNN)).graph
    _forbid_weight_values(graph)
    weight = graph.tensors()["w1"]
    assert ShapeView.is_constant(weight) and list(weight.shape) == [8, 3, 3, 3]
    with pytest.raises(AssertionError, match="'w1' were read"):
        ShapeView.const(weight)


def _op_comparisons(tree: ast.AST) -> list[str]:
    """Source of every comparison whose left side is some ``<x>.op`` (branching on an op type)."""
    return [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Compare)
            and isinstance(n.left, ast.Attribute) and n.left.attr == "op"
            and ast.unparse(n.left) in ("node.op", "ctx.node.op")]


def _direct_edits(tree: ast.AST) -> list[str]:
    """Source of every statement that edits a node's attributes or inputs or builds graph objects."""
    found = []
    for n in ast.walk(tree):
        targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AugAssign) else []
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Attribute) and sub.attr in ("attrs", "inputs", "outputs", "values"):
                    found.append(ast.unparse(n))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            owner = ast.unparse(n.func.value)
            if n.func.attr in ("append", "insert", "pop", "extend", "remove", "clear") and \
                    owner.endswith((".attrs", ".inputs", ".outputs", ".nodes")):
                found.append(ast.unparse(n))
        if isinstance(n, ast.Call) and ast.unparse(n.func).split(".")[-1] in ("Constant", "Node", "Variable"):
            found.append(ast.unparse(n))
    return found


@pytest.mark.parametrize("path", HANDLER_SOURCES, ids=lambda p: p.name)
def test_handlers_neither_branch_on_op_type_nor_edit_nodes(path):
    """One class per op behaviour (a handler registered for several op types behaves the same for all of them),
    and every graph edit goes through the context."""
    tree = ast.parse(path.read_text())
    assert _op_comparisons(tree) == []
    assert _direct_edits(tree) == []


def test_source_checks_catch_what_they_look_for():
    """The two source checks above do flag branching on node.op and direct edits (so they can fail)."""
    tree = ast.parse("if node.op == 'Size':\n    node.attrs['k'] = 1\n    node.inputs.append(gs.Constant('c', v))\n"
                     "x = ctx.node.op in ('A', 'B')")
    assert len(_op_comparisons(tree)) == 2
    assert len(_direct_edits(tree)) == 3


def _split_node(opset_inputs: int = 1):
    """A graph with x -> Split -> (s0, s1) and a constant shared by Split and another node."""
    x = gs.Variable("x", dtype=np.float32, shape=[2, 4])
    sizes = gs.Constant("sizes", np.array([2, 2], dtype=np.int64))
    s0, s1 = gs.Variable("s0", dtype=np.float32), gs.Variable("s1", dtype=np.float32)
    inputs = [x, sizes][:opset_inputs]
    split = gs.Node("Split", name="split", attrs={"axis": 1, "num_outputs": 2}, inputs=inputs, outputs=[s0, s1])
    other = gs.Node("Identity", name="other", inputs=[sizes], outputs=[gs.Variable("copy")])
    graph = gs.Graph(nodes=[split, other], inputs=[x], outputs=[s0, s1], opset=18)
    return graph, split, other


def _rewrite_ctx(graph, node) -> RewriteContext:
    return RewriteContext(node, removed={}, sizes={}, graph=graph, opset=18)


def test_set_attr_and_remove_attr_edit_only_the_node():
    graph, split, other = _split_node()
    ctx = _rewrite_ctx(graph, split)
    ctx.set_attr("axis", 0)
    ctx.remove_attr("num_outputs")
    ctx.remove_attr("absent")  # no error for an attribute the node does not have
    assert split.attrs == {"axis": 0}
    assert other.attrs == {}


def test_set_input_values_gives_the_node_a_private_copy():
    graph, split, other = _split_node(opset_inputs=2)
    _rewrite_ctx(graph, split).set_input_values(1, np.array([3, 1], dtype=np.int64))
    new = split.inputs[1]
    assert isinstance(new, gs.Constant) and new.name != "sizes" and new.values.tolist() == [3, 1]
    assert other.inputs[0].name == "sizes" and other.inputs[0].values.tolist() == [2, 2]


def test_set_input_values_adds_an_absent_optional_input():
    graph, split, _ = _split_node(opset_inputs=1)
    _rewrite_ctx(graph, split).set_input_values(1, np.array([3, 1], dtype=np.int64))
    assert [t.name for t in split.inputs][0] == "x"
    assert split.inputs[1].values.tolist() == [3, 1] and split.inputs[1].name not in ("", "sizes")
    _rewrite_ctx(graph, split).set_input_values(3, np.array([0], dtype=np.int64))  # a gap: filled by an empty input
    assert split.inputs[2].name == "" and split.inputs[3].values.tolist() == [0]
    assert len({t.name for t in graph.tensors().values()}) == len(graph.tensors())  # names stay unique
