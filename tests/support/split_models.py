"""Models where one weight is split into several groups (written with onnx.helper): a conv whose output a Split
sends to two branches (cross-stage-partial style), and a fused QKV MatMul weight sliced in three. Every group of
such a weight has the same root axis, so a plan must tell them apart by more than the root."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _weight(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)


def _model(nodes, name, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def conv_split() -> onnx.ModelProto:
    """x -> Conv(w: 8 out) -> Relu -> Split [4, 4] -> Conv(wa) | Conv(wb) -> Concat: groups 0 and 1 both have root
    w[axis 0] (4 channels each)."""
    rng = np.random.default_rng(0)
    inits = [_weight(rng, "w", (8, 3, 3, 3)), _weight(rng, "b", (8,)), _weight(rng, "wa", (5, 4, 3, 3)),
             _weight(rng, "wb", (6, 4, 1, 1)), numpy_helper.from_array(np.array([4, 4], np.int64), "split")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["y"], ["r"]),
             helper.make_node("Split", ["r", "split"], ["ya", "yb"], axis=1),
             helper.make_node("Conv", ["ya", "wa"], ["za"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["yb", "wb"], ["zb"]),
             helper.make_node("Concat", ["za", "zb"], ["out"], axis=1)]
    return _model(nodes, "conv_split", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                  [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 11, 8, 8])], inits)


def qkv_sliced(dim: int = 6, width: int = 8) -> onnx.ModelProto:
    """x[N, 7, dim] -> MatMul(wqkv [dim, 3 * width]) + bqkv -> Slice into q, k, v -> Relu -> MatMul each -> Sum:
    three groups with root wqkv[axis 1] (``width`` columns each)."""
    rng = np.random.default_rng(1)
    inits = [_weight(rng, "wqkv", (dim, 3 * width)), _weight(rng, "bqkv", (3 * width,)),
             numpy_helper.from_array(np.array([-1], np.int64), "last")]
    inits += [_weight(rng, f"wo_{part}", (width, 5)) for part in "qkv"]
    inits += [numpy_helper.from_array(np.array([k * width], np.int64), f"at{k}") for k in range(4)]
    nodes = [helper.make_node("MatMul", ["x", "wqkv"], ["h0"]), helper.make_node("Add", ["h0", "bqkv"], ["h"])]
    for k, part in enumerate("qkv"):
        nodes += [helper.make_node("Slice", ["h", f"at{k}", f"at{k + 1}", "last"], [part]),
                  helper.make_node("Relu", [part], [f"{part}_act"]),
                  helper.make_node("MatMul", [f"{part}_act", f"wo_{part}"], [f"o{part}"])]
    nodes.append(helper.make_node("Sum", ["oq", "ok", "ov"], ["y"]))
    return _model(nodes, "qkv_sliced", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 7, dim])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 7, 5])], inits)
