"""Apply a plan: slice every constant on a pruned axis, let handlers rewrite attributes and shape constants, and
update activation shapes. Returns the rewritten graph; exporting, saving and checking are other stages'.

Big models are sliced lazily: when the model came with external data or holds more than ``STAGE_THRESHOLD`` bytes of
constants (export stages the weights of both in a data file anyway), each sliced weight of at least
``_LAZY_MIN_BYTES`` becomes a ``DeferredValues`` that slices its source (memory-mapped or in memory) only when it
is read. Export writes it to the data file one tensor at a time and drops it, so the pruned weights never all sit in
anonymous memory beside the original, and a trial apply (planning's) slices nothing. A stage that reads ``.values``
(reconstruction) gets the slice kept in the constant, as onnx-graphsurgeon keeps lazy values once read. Smaller
models are sliced at once, as before."""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxprune.analysis import DependencyGraph
from onnxprune.axes import ChannelAxis
from onnxprune.errors import PruneError
from onnxprune.handlers import RewriteContext, handler_for
from onnxprune.ir.export import STAGE_THRESHOLD, ExportedModel, constant_bytes, export_graph
from onnxprune.ir.graph import all_nodes, all_tensors, copy_graph
from onnxprune.ir.loading import LoadedModel
from onnxprune.ir.reading import release_pages
from onnxprune.ir.saving import save_model
from onnxprune.ir.untie import reshare_constants
from onnxprune.ir.weight_folding import DeferredValues, refold_layouts


@dataclass
class PruneResult:
    """The pruned graph, which indices of which axes were removed, and the plan ({group id: units}) applied."""

    graph: gs.Graph
    removed: dict[ChannelAxis, np.ndarray]
    plan: dict[int, list[int]]
    loaded: LoadedModel | None = None

    @functools.cached_property
    def exported(self) -> ExportedModel:
        """The pruned graph exported the way the input came (external data for big models)."""
        return export_graph(self.graph, self.loaded)

    @property
    def model(self) -> onnx.ModelProto:
        """The pruned model as one self-contained ModelProto. For big models (``exported.data_dir`` set) this reads
        every external tensor into memory: use ``exported`` (sessions and ``save_model`` take it) to avoid that."""
        exported = self.exported
        if exported.data_dir is None:
            return exported.proto
        model = onnx.ModelProto()
        model.CopyFrom(exported.proto)
        onnx.load_external_data_for_model(model, exported.data_dir)
        return model

    def save(self, path: str | os.PathLike, source: str | os.PathLike | None = None) -> None:
        """Write the pruned model atomically (see ``onnxprune.ir.saving.save_model``); ``source``: the input file,
        which is never written over."""
        save_model(self.exported, path, source=source)


def apply_plan(dg: DependencyGraph, plan: dict[int, Iterable[int]]) -> PruneResult:
    """Prune a copy of ``dg.graph`` by ``plan`` ({group id: units}); the analysed graph is left untouched.
    Raises PruneError for an invalid plan or a node its handler cannot rewrite."""
    plan = {int(g): sorted({int(u) for u in units}) for g, units in plan.items()}
    removed = dg.resolve(plan)
    return PruneResult(graph=_pruned_graph(dg, removed), removed=removed, plan=plan, loaded=dg.loaded)


def prune_group(group, units: Iterable[int]) -> PruneResult:
    """Remove the given units (0 <= u < group.size) of one group: ``apply_plan(group.depgraph, {group.id: units})``."""
    return apply_plan(group.depgraph, {group.id: units})


# Constants with more bytes than this are sliced a block of rows at a time, releasing each block's pages (when the
# weight is memory-mapped) as soon as it is copied: the whole weight is never resident beside its sliced copy.
_BLOCK_BYTES = 32 << 20
# In graphs sliced lazily, constants of at least this many bytes get deferred slices; smaller ones are sliced at once.
_LAZY_MIN_BYTES = 1 << 20


def _sliced(values: np.ndarray, cuts: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """``values`` with the indices ``cuts`` lists removed, as a new contiguous array."""
    if values.nbytes <= _BLOCK_BYTES or values.ndim == 0 or not values.flags.c_contiguous:
        result = values
        for axis, idx in cuts:
            result = np.delete(result, idx, axis=axis)
        result = np.ascontiguousarray(result)
        release_pages(values)  # a memory-mapped weight was read once to slice it; its pages can go
        return result
    kept = {axis: np.setdiff1d(np.arange(values.shape[axis]), idx) for axis, idx in cuts}
    rows = kept.get(0, np.arange(len(values)))
    shape = [len(kept[a]) if a in kept else n for a, n in enumerate(values.shape)]
    result = np.empty(shape, dtype=values.dtype)
    step = max(1, _BLOCK_BYTES // max(1, values[0].nbytes))
    done = 0
    for start in range(0, len(values), step):
        stop = min(start + step, len(values))
        chosen = rows[(rows >= start) & (rows < stop)]
        block = values[chosen]
        for axis, idx in kept.items():
            if axis:
                block = np.take(block, idx, axis=axis)
        result[done:done + len(chosen)] = block
        done += len(chosen)
        release_pages(values, slice(start, stop))
    return result


def _deferred_slice(tensor: gs.Constant, cuts: list[tuple[int, np.ndarray]]) -> DeferredValues | None:
    """The values of ``tensor`` with ``cuts`` removed, sliced from its current values each time they are read; None
    for constants under ``_LAZY_MIN_BYTES`` or of a type numpy does not hold one element per item (sliced at once)."""
    source = tensor._values
    if isinstance(source, gs.ir.tensor.SparseValues) or source.shape is None or source.dtype is None:
        return None
    shape, dtype = [int(d) for d in source.shape], np.dtype(source.dtype)
    if int(np.prod(shape)) * dtype.itemsize < _LAZY_MIN_BYTES or dtype.kind not in "biufc":
        return None
    for axis, idx in cuts:
        shape[axis] -= len(np.unique(idx))

    def compute() -> np.ndarray:
        values = source.load() if isinstance(source, gs.ir.tensor.LazyValues) else source
        return _sliced(np.asarray(values), cuts)

    return DeferredValues(tensor.name, shape, dtype, compute)


def _pruned_graph(dg: DependencyGraph, removed: dict[ChannelAxis, np.ndarray]) -> gs.Graph:
    """A copy of ``dg.graph`` with ``removed`` applied."""
    sizes = dg.sizes()
    graph = copy_graph(dg.graph)
    tensors = all_tensors(graph)  # If/Loop/Scan bodies included: their weights and sizes are pruned alike
    by_tensor: dict[str, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for axis, idx in removed.items():
        by_tensor[axis.tensor].append((axis.axis, idx))
    lazy = getattr(dg.loaded, "external_data", False) or constant_bytes(dg.graph) > STAGE_THRESHOLD
    for name, cuts in by_tensor.items():
        tensor = tensors[name]
        if isinstance(tensor, gs.Constant):
            deferred = _deferred_slice(tensor, cuts) if lazy else None
            if deferred is not None:
                tensor._values = deferred
            else:
                tensor.values = _sliced(np.asarray(tensor.values), cuts)
    touched = set(by_tensor)
    made: dict = {}  # constants handlers made from each old one: equal new values share one (set_input_values)
    for node in list(all_nodes(graph)):
        if any(t.name in touched for t in list(node.inputs) + list(node.outputs)):
            handler = handler_for(node)
            try:
                handler.rewrite(node, RewriteContext(node, removed, sizes, graph, dg.opset, made))
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
    reshare_constants(graph, getattr(dg, "ties", []))  # untied copies still equal share one constant again
    refold_layouts(graph, getattr(dg.loaded, "layout_folds", {}))  # a folded view of a shared weight: stored once
    graph.cleanup(remove_unused_graph_inputs=False)
    return graph
