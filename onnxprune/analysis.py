"""Build the dependency graph: run every node's handler, then group coupled (axis, index) pairs.

Round 1 runs the handlers knowing nothing; the batch/spatial/sequence axes they declare are spread along
size-preserving couplings, and handlers that asked about such axes (Reshape choosing which factor of a merged axis
carries channels) run again with that knowledge, until nothing they asked about changes.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.axes import ChannelAxis
from onnxprune.components import connected_components
from onnxprune.handler import AnalysisContext, UnknownShape, handler_for


@dataclass
class AnalysisOptions:
    """Knobs of the analysis.

    protect_io: block the axes of graph inputs and outputs (default), except those in ``allowed_io_axes``.
    protect_initializer_inputs: also block initializers listed as graph inputs (set from the loader's policy).
    factor_policy: which factor of a split/merged axis (Reshape C -> heads x head_dim, channel shuffle) carries the
        pruning when several could: 'largest' (default: head_dim, shuffle width), 'leading' (heads), 'trailing'.
    repeat_policy: the factor policy at reshapes that merge copies made by Expand into one axis (grouped-query
        attention's repeat_kv, [b, kv, n_rep, t, hd] -> [b, kv * n_rep, t, hd]); None = factor_policy. With
        factor_policy 'leading', 'leading' here removes whole KV groups (a KV head with all its query heads) and
        'trailing' removes the same query heads from every KV group (every KV head stays).
    """

    protect_io: bool = True
    protect_initializer_inputs: bool = True
    allowed_io_axes: set[ChannelAxis] = field(default_factory=set)
    factor_policy: str = "largest"
    repeat_policy: str | None = None
    max_rounds: int = 4


class AnalysisRecord:
    """Everything the handlers declared in one round."""

    def __init__(self, graph: gs.Graph, options: AnalysisOptions, known_nonchannel: set[ChannelAxis]):
        self.graph = graph
        self.options = options
        self.tensors = graph.tensors()
        self.known_nonchannel = known_nonchannel
        self.edges: list[tuple[ChannelAxis, ChannelAxis, np.ndarray, np.ndarray, str]] = []
        self.blocks: dict[ChannelAxis, list[str]] = defaultdict(list)
        self.nonchannel: set[ChannelAxis] = set()
        self.inexact: dict[ChannelAxis, str] = {}
        self.producers: list[ChannelAxis] = []
        self.labels: dict[ChannelAxis, set[str]] = {}
        self.multiples: dict[ChannelAxis, int] = {}
        self._sizes: dict[ChannelAxis, int | None] = {}

    def static_size(self, axis: ChannelAxis) -> int | None:
        """Static size of an axis, or None when dynamic or unknown."""
        if axis not in self._sizes:
            tensor = self.tensors.get(axis.tensor)
            if isinstance(tensor, gs.Constant):
                shape = tensor.shape if tensor.shape is not None else tensor.values.shape
            else:
                shape = None if tensor is None else tensor.shape
            dim = shape[axis.axis] if shape is not None and axis.axis < len(shape) else None
            self._sizes[axis] = int(dim) if isinstance(dim, (int, np.integer)) and dim >= 0 else None
        return self._sizes[axis]

    def add_edge(self, a: ChannelAxis, b: ChannelAxis, ia: np.ndarray, ib: np.ndarray, node: gs.Node) -> None:
        """Record that index ia[k] of ``a`` is coupled with index ib[k] of ``b``."""
        if len(ia) != len(ib):
            raise ValueError(f"{node.op} node '{node.name}' coupled {len(ia)} indices of {a} with {len(ib)} of {b}")
        for axis, idx in ((a, ia), (b, ib)):
            size = self.static_size(axis)
            if len(idx) and (idx.min() < 0 or idx.max() >= size):
                raise ValueError(f"{node.op} node '{node.name}' coupled indices outside {axis} (size {size})")
        self.edges.append((a, b, ia, ib, node.name))

    def block(self, axis: ChannelAxis, reason: str) -> None:
        """Record a reason that forbids pruning through ``axis``."""
        if reason not in self.blocks[axis]:
            self.blocks[axis].append(reason)


def _outer_names(subgraph: gs.Graph) -> set[str]:
    """Names a subgraph reads from the enclosing scope (implicit inputs of If/Loop/Scan)."""
    defined = {t.name for t in subgraph.inputs}
    used: set[str] = set()
    for node in subgraph.nodes:
        defined.update(t.name for t in node.outputs)
        used.update(t.name for t in node.inputs if not isinstance(t, gs.Constant))
        for value in node.attrs.values():
            if isinstance(value, gs.Graph):
                used |= _outer_names(value)
    return used - defined


def _run_handlers(graph: gs.Graph, options: AnalysisOptions, known: set[ChannelAxis], opset: int,
                  queried: set[ChannelAxis]) -> AnalysisRecord:
    record = AnalysisRecord(graph, options, known)
    record.known_nonchannel = _Recording(known, queried)
    for node in graph.nodes:
        ctx = AnalysisContext(node, record, opset)
        handler = handler_for(node)
        if handler is None:
            domain = f"{node.domain}::" if node.domain not in ("", None, "ai.onnx") else ""
            ctx.block_all(f"op '{domain}{node.op}' is not supported (opaque)")
        else:
            try:
                handler.analyse(node, ctx)
            except UnknownShape as exc:
                ctx.block_all(f"{exc}; give static input shapes with --input-shape")
            except Exception as exc:  # a node that does not fit its op's definition: block it, never guess
                ctx.block_all(f"the {node.op} handler cannot read this node ({exc.__class__.__name__}: {exc})")
        for value in node.attrs.values():
            if isinstance(value, gs.Graph):
                for name in _outer_names(value):
                    tensor = record.tensors.get(name)
                    if tensor is not None:
                        ctx.block_tensor(tensor, f"read inside the subgraph of {node.op} node '{node.name}'")
    if options.protect_io:
        for kind, tensors in (("input", graph.inputs), ("output", graph.outputs)):
            for tensor in tensors:
                for axis in range(len(tensor.shape or [])):
                    ca = ChannelAxis(tensor.name, axis)
                    if ca in options.allowed_io_axes:
                        continue
                    if isinstance(tensor, gs.Constant):  # the loader keeps initializers the model lists as inputs
                        if options.protect_initializer_inputs:
                            record.block(ca, f"initializer '{tensor.name}' is also a graph input, so it can be "
                                             "overridden at run time (--prune-initializer-inputs prunes it anyway)")
                    else:
                        record.block(ca, f"graph {kind} '{tensor.name}' axis {axis} is protected")
    return record


class _Recording(set):
    """The set of known non-channel axes, remembering which axes handlers asked about."""

    def __init__(self, items, queried: set):
        super().__init__(items)
        self.queried = queried

    def __contains__(self, item) -> bool:
        self.queried.add(item)
        return super().__contains__(item)


def _spread_nonchannel(record: AnalysisRecord) -> set[ChannelAxis]:
    """Axes reachable from a declared non-channel axis through size-preserving, one-to-one couplings."""
    axes = sorted({ax for e in record.edges for ax in e[:2]} | record.nonchannel)
    ids = {ax: k for k, ax in enumerate(axes)}
    a, b = [], []
    for ax, bx, ia, ib, _ in record.edges:
        size = record.static_size(ax)
        if size == record.static_size(bx) == len(ia) and len(np.unique(ia)) == len(np.unique(ib)) == size:
            a.append(ids[ax])
            b.append(ids[bx])
    labels = connected_components(len(axes), np.array(a, dtype=np.int64), np.array(b, dtype=np.int64))
    bad = {labels[ids[ax]] for ax in record.nonchannel}
    return {ax for ax in axes if labels[ids[ax]] in bad}


def analyse(graph: gs.Graph, opset: int, options: AnalysisOptions | None = None):
    """Run the handlers over ``graph`` and return the DependencyGraph with every group."""
    from onnxprune.groups import DependencyGraph

    options = options or AnalysisOptions()
    start = time.perf_counter()
    known: set[ChannelAxis] = set()
    for _ in range(options.max_rounds):
        queried: set[ChannelAxis] = set()
        record = _run_handlers(graph, options, known, opset, queried)
        spread = _spread_nonchannel(record)
        if {q for q in queried if q in spread} == {q for q in queried if q in known}:
            break
        known = spread
    dg = DependencyGraph(graph, opset, record, spread)
    dg.seconds = time.perf_counter() - start
    return dg
