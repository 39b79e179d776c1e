"""Random CNN graphs in ONNX for property tests: conv / BN / activation / add / concat / split / pool blocks."""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

SPATIAL = 6
BLOCKS = ("conv", "dwconv", "gconv", "bn", "act", "add", "concat", "split", "pool", "mul_se")
ACTS = ("Relu", "Sigmoid", "HardSwish", "LeakyRelu", "Tanh")


class _Builder:
    def __init__(self, rng: np.random.Generator, opset: int):
        self.rng, self.opset = rng, opset
        self.nodes, self.inits, self.k = [], [], 0

    def name(self, base: str) -> str:
        self.k += 1
        return f"{base}{self.k}"

    def const(self, base: str, array: np.ndarray) -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str]:
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name(op), **attrs))
        return outs

    def conv(self, x: str, cin: int, cout: int, kernel: int, group: int = 1) -> str:
        w = self.const("w", self.rng.standard_normal((cout, cin // group, kernel, kernel)).astype(np.float32) * 0.5)
        b = self.const("b", self.rng.standard_normal(cout).astype(np.float32))
        return self.node("Conv", [x, w, b], kernel_shape=[kernel, kernel], pads=[kernel // 2] * 4, group=group)[0]


def build_random_cnn(choices: list[tuple[str, int]], seed: int, opset: int = 17) -> onnx.ModelProto:
    """A valid random CNN: ``choices`` is a list of (block kind, integer parameter) drawn by hypothesis."""
    b = _Builder(np.random.default_rng(seed), opset)
    cur, ch = b.conv("x", 3, 8, 3), 8
    live: list[tuple[str, int]] = [(cur, ch)]
    for kind, p in choices:
        if kind == "conv":
            cout = 2 + p % 7
            cur, ch = b.conv(cur, ch, cout, 1 + 2 * (p % 2)), cout
        elif kind == "dwconv":
            cur = b.conv(cur, ch, ch, 3, group=ch)
        elif kind == "gconv" and ch % 2 == 0:
            cout = 2 * (1 + p % 4)
            cur, ch = b.conv(cur, ch, cout, 3, group=2), cout
        elif kind == "bn":
            stats = (b.rng.uniform(0.5, 1.5, ch), b.rng.standard_normal(ch), b.rng.standard_normal(ch),
                     b.rng.uniform(0.5, 2.0, ch))
            params = [b.const("bn", v.astype(np.float32)) for v in stats]
            cur = b.node("BatchNormalization", [cur, *params])[0]
        elif kind == "act":
            cur = b.node(ACTS[p % len(ACTS)], [cur])[0]
        elif kind == "add":
            same = [t for t, c in live if c == ch and t != cur]
            other = same[p % len(same)] if same else b.conv(cur, ch, ch, 1)
            cur = b.node("Add", [cur, other])[0]
        elif kind == "concat":
            other, och = live[p % len(live)]
            cur, ch = b.node("Concat", [cur, other], axis=1)[0], ch + och
        elif kind == "split" and ch >= 2:
            first = 1 + p % (ch - 1)
            sizes = b.const("split", np.array([first, ch - first], dtype=np.int64))
            a, c = b.node("Split", [cur, sizes], n_out=2, axis=1)
            live.append((c, ch - first))
            cur, ch = a, first
        elif kind == "pool":
            op = ("MaxPool", "AveragePool")[p % 2]
            cur = b.node(op, [cur], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])[0]
        elif kind == "mul_se":
            pooled = b.node("GlobalAveragePool", [cur])[0]
            gate = b.node("Sigmoid", [b.conv(pooled, ch, ch, 1)])[0]
            cur = b.node("Mul", [cur, gate])[0]
        live.append((cur, ch))
    unused = [t for t, _ in live if not any(t in n.input for n in b.nodes)]
    total = sum(c for t, c in live if t in unused)
    cat = b.node("Concat", unused, axis=1)[0] if len(unused) > 1 else unused[0]
    flat = b.node("Flatten", [b.node("GlobalAveragePool", [cat])[0]])[0]
    w = b.const("fc", b.rng.standard_normal((total, 5)).astype(np.float32))
    b.nodes.append(helper.make_node("MatMul", [flat, w], ["y"], name="head"))
    graph = helper.make_graph(b.nodes, "random_cnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SPATIAL, SPATIAL])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def cnn_choices():
    """Hypothesis strategy for ``build_random_cnn``'s block list."""
    return st.lists(st.tuples(st.sampled_from(BLOCKS), st.integers(0, 1000)), min_size=1, max_size=10)
