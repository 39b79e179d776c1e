"""Shared helpers of the op-handler unit tests: textual ONNX models with random weights, group look-ups, and a
check that prunes groups and compares the result with the mask oracle."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
from onnx import numpy_helper

import onnxprune as op
from onnxprune.axes import ChannelAxis
from onnxprune.validation.oracle import compare
from tests.support.checked import checked_prune


def make_model(text: str, seed: int = 0, positive: tuple[str, ...] = ("var",), **consts: np.ndarray) -> onnx.ModelProto:
    """Parse textual ONNX; every value_info entry that no node produces (``<float[4,3,3,3] w>`` without a value)
    becomes an initializer: ``consts[name]`` if given, else random normal values (uniform in [0.5, 1.5] for names
    starting with one of ``positive``, e.g. BatchNormalization variances)."""
    model = onnx.parser.parse_model(text)
    produced = {o for n in model.graph.node for o in n.output}
    rng = np.random.default_rng(seed)
    keep, inits = [], []
    for info in model.graph.value_info:
        if info.name in produced:
            keep.append(info)
            continue
        tt = info.type.tensor_type
        shape = [d.dim_value for d in tt.shape.dim]
        if info.name in consts:
            values = np.asarray(consts.pop(info.name))
        elif info.name.startswith(positive):
            values = rng.uniform(0.5, 1.5, shape)
        else:
            values = rng.standard_normal(shape)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        inits.append(numpy_helper.from_array(values.astype(dtype), info.name))
    assert not consts, f"constants {sorted(consts)} are not declared in the graph"
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    model.graph.initializer.extend(inits)
    return model


def analyse(text: str, seed: int = 0, options: op.AnalysisOptions | None = None, **consts) -> op.DependencyGraph:
    """make_model + analyse_model."""
    return op.analyse_model(make_model(text, seed=seed, **consts), options=options)


def group_of(dg: op.DependencyGraph, tensor: str, axis: int):
    """The single channel group that has ``tensor``'s ``axis`` as a member."""
    found = dg.group_of(tensor, axis)
    assert len(found) == 1, f"{tensor}[{axis}] is in {len(found)} channel groups: {found}"
    return found[0]


def table(group, tensor: str, axis: int) -> list[list[int]]:
    """Index table of one member: row i lists the indices of ``tensor``'s ``axis`` that unit i covers."""
    return group.members[ChannelAxis(tensor, axis)].tolist()


def member_axes(group) -> set[tuple[str, int]]:
    """The group's members as (tensor, axis) pairs."""
    return {(ax.tensor, ax.axis) for ax in group.members}


def prune_and_compare(dg: op.DependencyGraph, gid: int, units) -> tuple[onnx.ModelProto, bool]:
    """Prune ``units`` of group ``gid`` (checked by onnx.checker full_check and an onnxruntime session) and
    compare with the mask oracle; returns (pruned model, whether the oracle passed)."""
    plan = {gid: list(units)}
    result = checked_prune(dg, plan)
    report = compare(op.masked_model(dg, plan), result.model)
    return result.model, report.passed


def check_all_prunable(dg: op.DependencyGraph, expect: int | None = None) -> int:
    """Prune every prunable group by one unit and by half its units; exact groups must match the mask oracle,
    inexact ones must not. Returns the number of prunable groups (asserted equal to ``expect`` if given)."""
    groups = dg.prunable_groups()
    if expect is not None:
        assert len(groups) == expect, "\n".join(g.details() for g in dg.channel_groups())
    for g in groups:
        half = list(range(0, g.size, 2))[: max(1, g.size // 2)]
        for units in ([g.size - 1], half):
            if len(units) == g.size:
                continue
            _, passed = prune_and_compare(dg, g.id, units)
            assert passed == g.exact, f"oracle {'failed' if g.exact else 'passed'} for units {units}:\n{g.details()}"
    return len(groups)


def output_shapes(model: onnx.ModelProto) -> dict[str, list]:
    """Shapes of every value_info and output of a (pruned) model after ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        shapes[info.name] = [d.dim_value if d.HasField("dim_value") else d.dim_param
                             for d in info.type.tensor_type.shape.dim]
    return shapes


def initializer(model: onnx.ModelProto, prefix: str) -> np.ndarray:
    """Values of the one initializer whose name starts with ``prefix`` (pruned copies get a suffix)."""
    found = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name.startswith(prefix)]
    assert len(found) == 1, f"{len(found)} initializers named {prefix}*"
    return found[0]


def attribute(model: onnx.ModelProto, op_type: str, name: str, uses: str = ""):
    """Attribute ``name`` of the single node of ``op_type`` (that has an input named ``uses``*, if given)."""
    nodes = [n for n in model.graph.node
             if n.op_type == op_type and (not uses or any(i.startswith(uses) for i in n.input))]
    assert len(nodes) == 1, f"{len(nodes)} {op_type} nodes"
    for attr in nodes[0].attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return None


def header(opset: int = 17, ir: int = 8) -> str:
    """The model header of textual ONNX for the default domain at ``opset``."""
    return f'<ir_version: {ir}, opset_import: ["" : {opset}]>'
