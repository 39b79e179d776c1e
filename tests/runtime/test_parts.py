"""``PartedSession``: a model run a part at a time (each part's constants within a budget, in a session of its own)
gives exactly the outputs of one session on the whole model; graphs with subgraphs run whole."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune.runtime import make_session
from onnxprune.runtime.parts import PartedSession, split_nodes


def _model() -> onnx.ModelProto:
    """x -> 4 x (MatMul + Add + Relu), each layer also reading x's first projection (an activation used across
    parts) and one shared scale constant (an initializer several parts read)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.float32([0.5]), "scale")]
    nodes, current = [], "x"
    for k in range(4):
        inits.append(numpy_helper.from_array(rng.standard_normal((32, 32)).astype(np.float32) * 0.3, f"w{k}"))
        nodes += [helper.make_node("MatMul", [current, f"w{k}"], [f"m{k}"]),
                  helper.make_node("Mul", [f"m{k}", "scale"], [f"s{k}"]),
                  helper.make_node("Add", [f"s{k}", "m0" if k else "x"], [f"a{k}"]),
                  helper.make_node("Relu", [f"a{k}"], [f"r{k}"])]
        current = f"r{k}"
    nodes.append(helper.make_node("ReduceSum", [current], ["total"], keepdims=0))
    graph = helper.make_graph(nodes, "layers", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32])],
                              [helper.make_tensor_value_info("r3", TensorProto.FLOAT, ["N", 32]),
                               helper.make_tensor_value_info("total", TensorProto.FLOAT, [])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_parts_give_the_whole_models_outputs():
    model = _model()
    x = np.random.default_rng(1).standard_normal((3, 32)).astype(np.float32)
    whole = make_session(model, "cpu", fuse=False).run(None, {"x": x})
    parted = PartedSession(model, "cpu", part_bytes=32 * 32 * 4 + 4)  # one weight (and the scale) per part
    assert len(parted.parts) == 4
    assert [i.name for i in parted.get_inputs()] == ["x"] and parted.get_inputs()[0].type == "tensor(float)"
    got = parted.run(None, {"x": x})
    assert all(np.array_equal(a, b) for a, b in zip(whole, got))
    assert np.array_equal(parted.run(["total"], {"x": x})[0], whole[1])


def test_a_graph_with_a_subgraph_runs_whole():
    model = _model()
    then = helper.make_graph([helper.make_node("Identity", ["r3"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Neg", ["r3"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    model.graph.node.extend([helper.make_node("Greater", ["total", "scale"], ["c0"]),
                             helper.make_node("Squeeze", ["c0"], ["c"]),
                             helper.make_node("If", ["c"], ["picked"], then_branch=then, else_branch=other)])
    model.graph.output.append(helper.make_tensor_value_info("picked", TensorProto.FLOAT, None))
    assert len(split_nodes(model.graph, 1)) == 1
    x = np.random.default_rng(2).standard_normal((2, 32)).astype(np.float32)
    assert np.array_equal(PartedSession(model, "cpu", part_bytes=1).run(["picked"], {"x": x})[0],
                          make_session(model, "cpu", fuse=False).run(["picked"], {"x": x})[0])
