"""Model statistics: parameters, multiply-accumulates (from each handler's ``macs``), op-type support counts.

Bodies of If/Loop/Scan count too: parameters are every constant of every body (both branches of an If are stored);
MACs are one run's, as the control-flow handlers count them (If: its larger branch; Loop: the body times a constant
trip count; Scan: the body times a static scan length; see ``onnxprune.op_handlers.control_flow``)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.handlers import handler_for
from onnxprune.ir.graph import all_nodes
from onnxprune.op_handlers.control_flow import graph_macs


def count_params(graph: gs.Graph) -> int:
    """Number of elements in floating-point constants used by the graph and its bodies (weights, biases, norm
    statistics)."""
    seen: set[str] = set()
    total = 0
    for node in all_nodes(graph):
        for tensor in node.inputs:
            if isinstance(tensor, gs.Constant) and tensor.name not in seen:
                seen.add(tensor.name)
                if np.issubdtype(np.dtype(tensor.dtype), np.floating):
                    total += int(np.prod(tensor.shape))
    return total


def count_macs(graph: gs.Graph) -> int:
    """Multiply-accumulates of one sample (dynamic dims count as 1), summed over nodes whose handler knows them."""
    return graph_macs(graph)


def op_support(graph: gs.Graph) -> dict[str, dict]:
    """{op_type: {"count": n, "supported": bool}} over the nodes of the graph and its bodies."""
    nodes = list(all_nodes(graph))
    counts = Counter((n.domain or "", n.op) for n in nodes)
    result = {}
    for (domain, op), count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        node = next(n for n in nodes if n.op == op and (n.domain or "") == domain)
        key = f"{domain}::{op}" if domain not in ("", "ai.onnx") else op
        result[key] = {"count": count, "supported": handler_for(node) is not None}
    return result
