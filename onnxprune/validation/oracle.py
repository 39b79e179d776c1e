"""The mask oracle (DESIGN.md section 4): the original model with the plan's channels zeroed where they are
produced. For mask-exact groups the pruned model must compute the same outputs; ``compare`` (from
``onnxprune.validation.comparison``, re-exported here for callers that check against the oracle) judges that."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.analysis import DependencyGraph
from onnxprune.axes import ChannelAxis
from onnxprune.handlers import OracleContext, handler_for
from onnxprune.ir.export import ExportedModel, export_graph
from onnxprune.ir.graph import all_graphs, all_nodes, all_tensors, copy_graph
from onnxprune.validation.comparison import Comparison, compare, max_abs_diff


def masked_model(dg: DependencyGraph, plan: dict[int, Iterable[int]]) -> ExportedModel:
    """The analysed model where every pruned activation index is replaced by 0 right after it is produced (inside
    If/Loop/Scan bodies too: the mask sits in the graph that produces the tensor, or that has it as an input)."""
    removed = dg.resolve(plan)
    graph = copy_graph(dg.graph)
    tensors = all_tensors(graph)
    owners = {t.name: g for g in reversed(all_graphs(graph)) for t in list(g.inputs) + [
        o for n in g.nodes for o in n.outputs]}
    by_tensor = defaultdict(list)
    for axis, idx in removed.items():
        if isinstance(tensors[axis.tensor], gs.Variable):
            by_tensor[axis.tensor].append((axis.axis, idx))
    for name, cuts in by_tensor.items():
        tensor = tensors[name]
        rank = len(tensor.shape)
        keep = np.ones([1] * rank, dtype=bool)
        for axis, idx in cuts:
            line = np.ones(dg.record.static_size(ChannelAxis(name, axis)), dtype=bool)
            line[idx] = False
            keep = keep & line.reshape([-1 if a == axis else 1 for a in range(rank)])
        masked = gs.Variable(f"{name}__masked", dtype=tensor.dtype, shape=tensor.shape)
        users = list(tensor.outputs)
        for user in users:
            for k, t in enumerate(user.inputs):
                if t is tensor:
                    user.inputs[k] = masked
        owner = owners.get(name, graph)
        owner.nodes.append(_mask_node(name, tensor, masked, keep, dg.opset))
        if tensor in owner.outputs:
            owner.outputs[owner.outputs.index(tensor)] = masked
    for node in list(all_nodes(graph)):
        if any(ChannelAxis(t.name, a) in removed for t in node.inputs for a in range(len(t.shape or []))):
            handler = handler_for(node)
            if handler is not None:
                handler.oracle(node, OracleContext(node, removed, graph))
    graph.toposort()
    return export_graph(graph, dg.loaded)


def _mask_node(name: str, tensor: gs.Variable, masked: gs.Variable, keep: np.ndarray, opset: int) -> gs.Node:
    """masked = tensor where keep else 0: Where (so inf * 0 cannot make NaN), And for bool (onnxruntime has no
    bool Where), Mul before opset 9 (no Where; onnxruntime runs neither before opset 7)."""
    if np.dtype(tensor.dtype) == np.bool_:
        return gs.Node("And", name=f"{name}__mask", inputs=[tensor, gs.Constant(f"{name}__keep", keep)],
                       outputs=[masked])
    if opset >= 9:
        zero = gs.Constant(f"{name}__zero", np.zeros((), dtype=tensor.dtype))
        return gs.Node("Where", name=f"{name}__mask", inputs=[gs.Constant(f"{name}__keep", keep), tensor, zero],
                       outputs=[masked])
    factor = gs.Constant(f"{name}__keep", keep.astype(tensor.dtype))
    return gs.Node("Mul", name=f"{name}__mask", inputs=[tensor, factor], outputs=[masked])


__all__ = ["Comparison", "compare", "masked_model", "max_abs_diff"]
