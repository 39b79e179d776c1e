"""Build the dependency graph: run every node's handler, then group coupled (axis, index) pairs.

Round 1 runs the handlers knowing nothing; the batch/spatial/sequence axes they declare are spread along
size-preserving couplings, and handlers that asked about such axes (Reshape choosing which factor of a merged axis
carries channels) run again with that knowledge, until nothing they asked about changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.analysis.components import connected_components
from onnxprune.analysis.groups import DependencyGraph
from onnxprune.axes import ChannelAxis
from onnxprune.handlers import AnalysisContext, UnknownShape, handler_for
from onnxprune.handlers.record import AnalysisOptions, AnalysisRecord
from onnxprune.ir.graph import all_tensors, subgraphs


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


def _scoped_nodes(graph: gs.Graph, scope: str = "") -> Iterator[tuple[gs.Node, str]]:
    """(node, where it sits) for every node, bodies included: '' at the top, else ' in then_branch of If node ...'."""
    for node in graph.nodes:
        yield node, scope
        for name, body in subgraphs(node):
            yield from _scoped_nodes(body, f" in {name} of {node.op} node '{node.name}'{scope}")


def _block_body_boundary(node: gs.Node, ctx: AnalysisContext, record: AnalysisRecord) -> None:
    """A node whose handler does not couple its bodies: what crosses their boundary (outer tensors read inside, the
    bodies' own inputs and outputs) is blocked; groups wholly inside a body stay prunable."""
    for name, body in subgraphs(node):
        reason = f"read inside the subgraph of {node.op} node '{node.name}'"
        for outer in _outer_names(body):
            if outer in record.tensors:
                ctx.block_tensor(record.tensors[outer], reason)
        for tensor in list(body.inputs) + list(body.outputs):
            ctx.block_tensor(tensor, f"input or output of the {name} of {node.op} node '{node.name}', which "
                                     "onnxprune does not couple")


def _run_handlers(graph: gs.Graph, options: AnalysisOptions, known: set[ChannelAxis], opset: int,
                  queried: set[ChannelAxis]) -> AnalysisRecord:
    record = AnalysisRecord(graph, options, known)
    record.tensors = all_tensors(graph)  # bodies of If/Loop/Scan included
    record.known_nonchannel = _Recording(known, queried)
    for node, scope in _scoped_nodes(graph):
        ctx = AnalysisContext(node, record, opset)
        handler = handler_for(node)
        coupled = False  # whether the handler coupled the boundaries of the node's bodies
        if handler is None:
            domain = f"{node.domain}::" if node.domain not in ("", None, "ai.onnx") else ""
            ctx.block_all(f"op '{domain}{node.op}' is not supported (opaque){scope}")
        else:
            try:
                handler.analyse(node, ctx)
                coupled = handler.couples_bodies
            except UnknownShape as exc:
                ctx.block_all(f"{exc}{scope}; give static input shapes with --input-shape")
            except Exception as exc:  # a node that does not fit its op's definition: block it, never guess
                ctx.block_all(f"the {node.op} handler cannot read this node{scope} ({exc.__class__.__name__}: {exc})")
        if subgraphs(node) and not coupled:
            _block_body_boundary(node, ctx, record)
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
        if size == record.static_size(bx) == len(ia) and _covers(ia, size) and (ib is ia or _covers(ib, size)):
            a.append(ids[ax])
            b.append(ids[bx])
    labels = connected_components(len(axes), np.array(a, dtype=np.int64), np.array(b, dtype=np.int64))
    bad = {labels[ids[ax]] for ax in record.nonchannel}
    return {ax for ax in axes if labels[ids[ax]] in bad}


def _covers(idx: np.ndarray, size: int) -> bool:
    """Whether ``idx`` (indices into an axis of ``size``, as many as ``size``) holds every index once."""
    return bool(np.count_nonzero(np.bincount(idx, minlength=size)) == size)


def analyse(graph: gs.Graph, opset: int, options: AnalysisOptions | None = None) -> DependencyGraph:
    """Run the handlers over ``graph`` and return the DependencyGraph with every group."""
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
