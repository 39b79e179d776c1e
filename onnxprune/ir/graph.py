"""Small helpers on onnx-graphsurgeon graphs that gs itself lacks: copies that keep value types, fresh names."""

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


def fresh_name(graph: gs.Graph, base: str) -> str:
    """``<base>_prunedN`` with the smallest N that no tensor of ``graph`` uses."""
    taken = graph.tensors()
    k = 1
    while f"{base}_pruned{k}" in taken:
        k += 1
    return f"{base}_pruned{k}"
