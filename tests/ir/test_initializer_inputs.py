"""Initializers the model also lists as graph inputs: protected by default at IR >= 4 (they may be overridden at
run time), pruned as weights at IR < 4 (the format requires the listing) or when asked; they stay inputs."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import onnxprune as op
from onnxprune.validation.oracle import compare


def _model(ir_version: int, opset: int):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 3, 1, 1)).astype(np.float32)
    w2 = rng.standard_normal((2, 6, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(w2, "w2")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])]
    inputs += [helper.make_tensor_value_info(i.name, TensorProto.FLOAT, list(i.dims)) for i in inits]
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def _prune_w_group(dg):
    group = dg.group_of("w", 0)[0]
    assert group.prunable, group.blocked_reasons
    result = op.prune_group(group, [1, 4])
    assert compare(op.masked_model(dg, {group.id: [1, 4]}), result.model).passed
    declared = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in result.model.graph.input}
    assert declared["w"] == [4, 3, 1, 1] and declared["w2"] == [2, 4, 1, 1]
    return result


def test_protected_by_default_from_ir_4_and_prunable_when_asked():
    model = _model(ir_version=8, opset=13)
    blocked = op.analyse_model(model).group_of("w", 0)[0]
    assert not blocked.prunable and "--prune-initializer-inputs" in blocked.blocked_reasons[0]
    _prune_w_group(op.analyse_model(model, initializer_inputs="prune"))


def test_old_ir_versions_list_every_initializer_as_input_and_are_pruned():
    result = _prune_w_group(op.analyse_model(_model(ir_version=3, opset=8)))
    assert result.model.ir_version == 3
