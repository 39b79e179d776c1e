"""Apply a plan: slice every constant on a pruned axis, let handlers rewrite attributes and shape constants,
update activation shapes, and export a checked ModelProto."""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxprune.axes import ChannelAxis
from onnxprune.errors import PruneError
from onnxprune.handler import RewriteContext, handler_for
from onnxprune.ir import copy_graph
from onnxprune.loading import release_pages
from onnxprune.saving import check_model, save_model, to_proto

_COLLECT_BYTES = 1 << 26


@dataclass
class PruneResult:
    """The pruned model, and which indices of which axes were removed."""

    model: onnx.ModelProto
    removed: dict[ChannelAxis, np.ndarray]
    plan: dict[int, list[int]]

    def save(self, path: str) -> None:
        """Write the model atomically (temporary file, then rename)."""
        save_model(self.model, path)


def apply_plan(dg, plan: dict[int, Iterable[int]], check: bool = True) -> PruneResult:
    """Prune a copy of ``dg.graph`` by ``plan`` ({group id: units}); the analysed graph is left untouched."""
    plan = {int(g): sorted({int(u) for u in units}) for g, units in plan.items()}
    removed = dg.resolve(plan)
    graph, sliced = _pruned_graph(dg, removed)
    model = to_proto(graph, dg.loaded)
    del graph
    if sliced > _COLLECT_BYTES:
        gc.collect()  # the graph copy is cyclic garbage holding the sliced weights: free them before the check
    if check:
        check_model(model, original=lambda: to_proto(dg.graph, dg.loaded))
    return PruneResult(model=model, removed=removed, plan=plan)


def _pruned_graph(dg, removed: dict[ChannelAxis, np.ndarray]) -> tuple[gs.Graph, int]:
    """A copy of ``dg.graph`` with ``removed`` applied, and how many bytes of sliced constants it holds."""
    sizes = dg.sizes()
    graph = copy_graph(dg.graph)
    tensors = graph.tensors()
    by_tensor: dict[str, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for axis, idx in removed.items():
        by_tensor[axis.tensor].append((axis.axis, idx))
    sliced = 0
    for name, cuts in by_tensor.items():
        tensor = tensors[name]
        if isinstance(tensor, gs.Constant):
            source = values = np.asarray(tensor.values)
            for axis, idx in cuts:
                values = np.delete(values, idx, axis=axis)
            tensor.values = np.ascontiguousarray(values)
            sliced += tensor.values.nbytes
            release_pages(source)  # a memory-mapped weight was read once to slice it; its pages can go
    touched = set(by_tensor)
    for node in list(graph.nodes):
        if any(t.name in touched for t in list(node.inputs) + list(node.outputs)):
            handler = handler_for(node)
            try:
                handler.rewrite(node, RewriteContext(node, removed, sizes, graph, dg.opset))
            except PruneError:
                raise
            except Exception as exc:
                raise PruneError(f"rewriting {node.op} node '{node.name}' failed: {exc}") from exc
    for name, cuts in by_tensor.items():
        tensor = tensors[name]
        if isinstance(tensor, gs.Variable) and tensor.shape is not None:
            shape = list(tensor.shape)
            for axis, idx in cuts:
                shape[axis] = shape[axis] - len(idx)
            tensor.shape = shape
    graph.cleanup(remove_unused_graph_inputs=False)
    return graph, sliced
