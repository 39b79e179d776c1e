"""Tiny models for the validation tests, written with onnx.helper."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def classifier(weight: np.ndarray) -> onnx.ModelProto:
    """x[N, 4] -> Relu(x @ W) -> y[N, classes]: a tiny classifier-like model."""
    w = numpy_helper.from_array(weight.astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", weight.shape[1]])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def sequence_model(weight: np.ndarray) -> onnx.ModelProto:
    """x[N, 5, 4] -> x @ W -> y[N, 5, features]: an output that is not classifier-like (judged by cosine)."""
    w = numpy_helper.from_array(weight.astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, weight.shape[1]])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def relu_mlp(width: int, layers: int, scale: float, gemm: bool = False) -> onnx.ModelProto:
    """x[N, width] -> ``layers`` x (linear + bias + Relu) -> linear + bias -> y[N, 4], random weights (seed 0) times
    ``scale``: MatMul + Add with w[in, out], or (``gemm``) Gemm with transB and w[out, in]."""
    rng = np.random.default_rng(0)
    nodes, inits, current = [], [], "x"
    for k in range(layers + 1):
        out_dim = width if k < layers else 4
        shape = (out_dim, width) if gemm else (width, out_dim)
        inits += [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * scale, f"w{k}"),
                  numpy_helper.from_array(rng.standard_normal(out_dim).astype(np.float32), f"b{k}")]
        out = ("g" if gemm else "a") + str(k) if k < layers else "y"
        if gemm:
            nodes.append(helper.make_node("Gemm", [current, f"w{k}", f"b{k}"], [out], transB=1))
        else:
            nodes += [helper.make_node("MatMul", [current, f"w{k}"], [f"m{k}"]),
                      helper.make_node("Add", [f"m{k}", f"b{k}"], [out])]
        if k < layers:
            nodes.append(helper.make_node("Relu", [out], [f"r{k}"]))
            current = f"r{k}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
