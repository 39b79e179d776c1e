"""One small CNN written at opsets 9 to the newest onnx knows, in each opset's forms (Split sizes, Squeeze/Unsqueeze
and Reduce* axes, Pad pads, Slice bounds, Clip bounds as attributes or inputs; Upsample or Resize): every prunable
group pruned by half matches the mask oracle, and the output keeps the input's ir_version and opset imports.

The newest opset onnx defines may be newer than onnxruntime runs: such models are pruned without the onnxruntime
session and checked with onnx.checker only."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune as op
from onnxprune.validation.oracle import compare
from tests.support.checked import checked_prune

NEWEST = onnx.defs.onnx_opset_version()


@functools.cache
def runtime_runs(opset: int) -> bool:
    """Whether onnxruntime loads and runs a model of this default-domain opset."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=_ir(opset))
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": np.ones(1, np.float32)})
    except Exception:
        return False
    return True


def _ir(opset: int) -> int:
    return helper.find_min_ir_version_for([helper.make_opsetid("", opset)])


NEWEST_RUNNABLE = max(v for v in range(21, NEWEST + 1) if runtime_runs(v))
OPSETS = sorted({9, 11, 13, 17, 18, 21, NEWEST_RUNNABLE, NEWEST})


class _Builder:
    def __init__(self, opset: int):
        self.opset, self.nodes, self.inits = opset, [], []
        self.rng = np.random.default_rng(opset)

    def const(self, name: str, values) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(values), name))
        return name

    def node(self, op_type: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=f"{op_type}_{outputs[0]}", **attrs))

    def ints(self, name: str, values: list[int]) -> str:
        return self.const(name, np.array(values, dtype=np.int64))

    def with_axes(self, op_type: str, x: str, out: str, axes: list[int], since: int, **attrs) -> None:
        """An op whose axes moved from an attribute to an input at opset ``since``."""
        if self.opset >= since:
            self.node(op_type, [x, self.ints(f"{out}_axes", axes)], [out], **attrs)
        else:
            self.node(op_type, [x], [out], axes=axes, **attrs)

    def weight(self, name: str, *shape: int) -> str:
        return self.const(name, (self.rng.standard_normal(shape) * 0.5).astype(np.float32))


def build_cnn(opset: int) -> onnx.ModelProto:
    """x[N,3,8,8] -> conv/BN/clip -> split -> (conv | pad+conv) -> concat -> channel slice -> upsample ->
    spatial slice -> reduce mean -> squeeze/unsqueeze -> reduce sum -> gemm -> y[N,5]."""
    b = _Builder(opset)
    b.node("Conv", ["x", b.weight("w1", 16, 3, 3, 3), b.weight("b1", 16)], ["c1"], pads=[1, 1, 1, 1])
    stats = [b.weight("gamma", 16), b.weight("beta", 16), b.weight("mean", 16),
             b.const("var", b.rng.uniform(0.5, 1.5, 16).astype(np.float32))]
    b.node("BatchNormalization", ["c1", *stats], ["bn"])
    if opset >= 11:
        b.node("Clip", ["bn", b.const("lo", np.float32(0)), b.const("hi", np.float32(6))], ["act"])
    else:
        b.node("Clip", ["bn"], ["act"], min=0.0, max=6.0)
    if opset >= 18:
        b.node("Split", ["act"], ["s1", "s2"], axis=1, num_outputs=2)
    elif opset >= 13:
        b.node("Split", ["act", b.ints("split", [8, 8])], ["s1", "s2"], axis=1)
    else:
        b.node("Split", ["act"], ["s1", "s2"], axis=1, split=[8, 8])
    b.node("Conv", ["s1", b.weight("w2", 8, 8, 1, 1)], ["a"])
    if opset >= 11:
        b.node("Pad", ["s2", b.ints("pads", [0, 0, 1, 1, 0, 0, 1, 1])], ["p"], mode="constant")
    else:
        b.node("Pad", ["s2"], ["p"], mode="constant", pads=[0, 0, 1, 1, 0, 0, 1, 1])
    b.node("Conv", ["p", b.weight("w3", 8, 8, 3, 3)], ["c"])
    b.node("Concat", ["a", "c"], ["cat"], axis=1)
    if opset >= 10:
        b.node("Slice", ["cat", b.ints("st", [2]), b.ints("en", [14]), b.ints("ax", [1])], ["cs"])
    else:
        b.node("Slice", ["cat"], ["cs"], starts=[2], ends=[14], axes=[1])
    scales = b.const("scales", np.array([1, 1, 2, 2], dtype=np.float32))
    if opset >= 11:  # roi became optional at 13
        roi = "" if opset >= 13 else b.const("roi", np.zeros(0, dtype=np.float32))
        b.node("Resize", ["cs", roi, scales], ["up"], mode="nearest")
    else:
        b.node("Upsample", ["cs", scales], ["up"], mode="nearest")
    if opset >= 10:
        b.node("Slice", ["up", b.ints("st2", [0, 0]), b.ints("en2", [16, 16]), b.ints("ax2", [2, 3]),
                         b.ints("sp2", [2, 2])], ["down"])
    else:
        b.node("Slice", ["up"], ["down"], starts=[0, 0], ends=[16, 16], axes=[2, 3])
    b.with_axes("ReduceMean", "down", "gap", [2, 3], since=18, keepdims=1)
    b.with_axes("Squeeze", "gap", "sq", [2, 3], since=13)
    b.with_axes("Unsqueeze", "sq", "un", [2], since=13)
    b.with_axes("ReduceSum", "un", "flat", [2], since=13, keepdims=0)
    b.node("Gemm", ["flat", b.weight("fc", 5, 12), b.weight("fcb", 5)], ["y"], transB=1)
    graph = helper.make_graph(b.nodes, f"cnn_opset{opset}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=_ir(opset))
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("opset", OPSETS)
def test_same_cnn_at_every_opset_prunes_and_keeps_its_versions(opset):
    model = build_cnn(opset)
    runs = runtime_runs(opset)
    dg = op.analyse_model(model)
    roots = {g.root.tensor for g in dg.prunable_groups()}
    assert {"w1", "w2", "w3"} <= roots, "\n".join(g.details() for g in dg.channel_groups())
    for group in dg.prunable_groups():
        units = list(range(0, group.size, 2))
        result = (checked_prune if runs else op.apply_plan)(dg, {group.id: units})
        pruned = result.model
        assert pruned.ir_version == model.ir_version
        assert [(i.domain, i.version) for i in pruned.opset_import] == [("", opset)]
        onnx.checker.check_model(pruned, full_check=True)
        if runs:
            report = compare(op.masked_model(dg, {group.id: units}), pruned)
            assert report.passed, (opset, group.details(), report)
    plan = {g.id: list(range(1, g.size, 3)) for g in dg.prunable_groups()}
    pruned = (checked_prune if runs else op.apply_plan)(dg, plan).model
    onnx.checker.check_model(pruned, full_check=True)
    if runs:
        assert compare(op.masked_model(dg, plan), pruned).passed


def test_the_newest_opsets_are_covered():
    assert NEWEST in OPSETS and NEWEST_RUNNABLE >= 21
