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
