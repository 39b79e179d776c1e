"""Small helpers on onnx-graphsurgeon graphs that gs itself lacks."""

from __future__ import annotations

import onnx_graphsurgeon as gs


def copy_graph(graph: gs.Graph) -> gs.Graph:
    """``graph.copy()`` that also keeps each variable's value type (gs drops sequence types when copying)."""
    copy = graph.copy()
    types = {name: t.type for name, t in graph.tensors().items() if isinstance(t, gs.Variable)}
    for name, tensor in copy.tensors().items():
        if isinstance(tensor, gs.Variable) and name in types:
            tensor.type = types[name]
    return copy
