"""Where folded weights come from: exporters often write ``Transpose(W)`` or ``Identity(W)`` of a framework
parameter, and constant folding turns the result into a new initializer named after the op's output. Tracing
those chains before folding lets the plan JSON name the parameter itself, with its axes."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnxprune.ir.shape_values import rule_for
from onnxprune.ir.shape_view import ShapeView, UnknownShape


def trace_sources(graph: gs.Graph) -> dict[str, tuple[str, list[int]]]:
    """{tensor name: (initializer name, axes)} for tensors that are an initializer moved by axis-preserving ops
    (``axes[i]`` is the initializer axis that the tensor's axis i holds), before constant folding."""
    sources: dict[str, tuple[str, list[int]]] = {}
    for node in graph.nodes:
        if not node.inputs or not node.outputs:
            continue
        src = node.inputs[0]
        if isinstance(src, gs.Constant):
            origin = (src.name, list(range(len(src.shape))))
        else:
            origin = sources.get(src.name)
        if origin is None:
            continue
        try:
            carried = rule_for(node).axis_source(node, ShapeView(node))
        except UnknownShape:
            carried = None
        if carried is not None:
            sources[node.outputs[0].name] = (origin[0], [origin[1][axis] for axis in carried])
    return sources


def source_entries(sources: dict[str, tuple[str, list[int]]], kept: dict[str, dict]) -> dict[str, dict]:
    """Translate {initializer: {"kept": {axis: indices}}} of folded initializers to their source parameters:
    {parameter: {"from": initializer, "kept": {parameter axis: indices}}}."""
    result = {}
    for name, entry in kept.items():
        if name in sources:
            origin, axes = sources[name]
            result[origin] = {"from": name, "kept": {str(axes[int(a)]): idx for a, idx in entry["kept"].items()}}
    return result
