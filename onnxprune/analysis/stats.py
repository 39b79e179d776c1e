"""Model statistics: parameters, multiply-accumulates (from each handler's ``macs``), op-type support counts.

Bodies of If/Loop/Scan count too: parameters are every constant of every body (both branches of an If are stored);
MACs are one run's, as the control-flow handlers count them (If: its larger branch; Loop: the body times a constant
trip count; Scan: the body times a static scan length; see ``onnxprune.op_handlers.control_flow``)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.errors import OnnxPruneError
from onnxprune.handlers import handler_for
from onnxprune.ir.export import ExportedModel
from onnxprune.ir.graph import all_nodes
from onnxprune.ir.loading import load
from onnxprune.op_handlers.control_flow import graph_macs
from onnxprune.runtime import example_inputs, make_session


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


# ---------------------------------------------------------------------------------------- MACs at input shapes
def free_input_dims(graph: gs.Graph) -> list[str]:
    """Symbolic dims of the graph inputs other than a leading (batch) dim: MACs per sample depend on them."""
    leading = {t.shape[0] for t in graph.inputs if t.shape and isinstance(t.shape[0], str)}
    return list(dict.fromkeys(d for t in graph.inputs for d in (t.shape or [])[1:]
                              if isinstance(d, str) and d not in leading))


def macs_shapes(graph: gs.Graph, source, shapes: dict[str, list] | None = None,
                feeds: dict | None = None) -> dict[str, list[int]] | None:
    """The concrete input shapes (batch 1) to count MACs at, when ``graph`` (the analysis of ``source``: a path,
    ModelProto or ExportedModel) has symbolic dims beyond the batch; None when it has none, or when ``source`` keeps
    its weights in a data file (``count_macs_at`` does not re-load those). In order: the shapes of calibration
    ``feeds``; the user's ``shapes`` (--input-shape); what ``example_inputs`` chooses for the rest."""
    if not free_input_dims(graph):
        return None
    if not _reloadable(source):  # counted with symbolic dims as 1: no session (all the weights) to choose sizes
        return None
    if feeds:
        return {name: [1, *np.shape(array)[1:]] for name, array in feeds.items()}
    proto = source.proto if isinstance(source, ExportedModel) else source
    try:
        chosen = example_inputs(proto, make_session(source, "cpu", prepack=False), batch=1, shapes=shapes)
    except Exception:  # no inputs the model runs on: MACs are counted with symbolic dims as 1 (and say so)
        return None
    return {name: list(np.shape(array)) for name, array in chosen.items()}


def count_macs_at(graph: gs.Graph, source, at: dict[str, list[int]] | None) -> int:
    """``count_macs`` of ``source`` (whose analysis is ``graph``) re-loaded with input shapes ``at``; of ``graph``
    itself (symbolic dims as 1) when ``at`` is None or the model cannot be re-loaded in memory."""
    if at is None or not _reloadable(source):
        return count_macs(graph)
    try:
        return count_macs(load(source.proto if isinstance(source, ExportedModel) else source,
                               input_shapes=at, strict_shapes=False).graph)
    except OnnxPruneError:
        return count_macs(graph)


def _reloadable(source) -> bool:
    """Whether ``count_macs_at`` can re-load ``source`` at other input shapes: not a model exported with its weights
    in a data file (a big model: re-loading it would read every weight again)."""
    return not (isinstance(source, ExportedModel) and source.data_dir)


def describe_shapes(at: dict[str, list[int]]) -> str:
    """'x=1x3x224x224, mask=1x16'."""
    return ", ".join(f"{name}={'x'.join(map(str, dims))}" for name, dims in at.items())


def macs_report(before: gs.Graph, after: gs.Graph, original, pruned, shapes: dict[str, list] | None = None,
                feeds: dict | None = None) -> dict:
    """{'before', 'after'} MACs per sample of the original (analysed as ``before``; ``original`` is its source or a
    callable returning it, called only when needed) and the pruned model (``after``, from ``pruned``). When the
    inputs have symbolic dims beyond the batch, both are counted at the same concrete shapes (``macs_shapes``),
    named under 'at' ('x=1x3x224x224'); 'at' is absent when they have none."""
    if not free_input_dims(before):
        return {"before": count_macs(before), "after": count_macs(after)}
    source = original() if callable(original) else original
    at = macs_shapes(before, source, shapes, feeds)
    result = {"before": count_macs_at(before, source, at), "after": count_macs_at(after, pruned, at)}
    result["at"] = describe_shapes(at) if at else f"symbolic dims {', '.join(free_input_dims(before))} counted as 1"
    return result
