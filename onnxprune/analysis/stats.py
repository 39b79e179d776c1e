"""Model statistics: parameters, multiply-accumulates (from each handler's ``macs``), op-type support counts."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.handlers import ShapeView, UnknownShape, handler_for


def count_params(graph: gs.Graph) -> int:
    """Number of elements in floating-point constants used by the graph (weights, biases, norm statistics)."""
    seen: set[str] = set()
    total = 0
    for node in graph.nodes:
        for tensor in node.inputs:
            if isinstance(tensor, gs.Constant) and tensor.name not in seen:
                seen.add(tensor.name)
                if np.issubdtype(np.dtype(tensor.dtype), np.floating):
                    total += int(np.prod(tensor.shape))
    return total


def count_macs(graph: gs.Graph) -> int:
    """Multiply-accumulates of one sample (dynamic dims count as 1), summed over nodes whose handler knows them."""
    total = 0
    for node in graph.nodes:
        handler = handler_for(node)
        if handler is not None:
            try:
                total += int(handler.macs(node, ShapeView(node)))
            except (UnknownShape, TypeError, IndexError):
                continue
    return total


def op_support(graph: gs.Graph) -> dict[str, dict]:
    """{op_type: {"count": n, "supported": bool}} over the main graph's nodes."""
    counts = Counter((n.domain or "", n.op) for n in graph.nodes)
    result = {}
    for (domain, op), count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        node = next(n for n in graph.nodes if n.op == op and (n.domain or "") == domain)
        key = f"{domain}::{op}" if domain not in ("", "ai.onnx") else op
        result[key] = {"count": count, "supported": handler_for(node) is not None}
    return result
