"""The mask oracle (DESIGN.md section 4): the original model with the plan's channels zeroed where they are
produced. For mask-exact groups the pruned model must compute the same outputs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.analysis import DependencyGraph
from onnxprune.axes import ChannelAxis
from onnxprune.errors import ValidationError
from onnxprune.handlers import OracleContext, handler_for
from onnxprune.ir.export import ExportedModel, export_graph
from onnxprune.ir.graph import copy_graph
from onnxprune.runtime import ModelSource, make_session, random_inputs


def masked_model(dg: DependencyGraph, plan: dict[int, Iterable[int]]) -> ExportedModel:
    """The analysed model where every pruned activation index is replaced by 0 right after it is produced."""
    removed = dg.resolve(plan)
    graph = copy_graph(dg.graph)
    tensors = graph.tensors()
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
        graph.nodes.append(_mask_node(name, tensor, masked, keep, dg.opset))
        if tensor in graph.outputs:
            graph.outputs[graph.outputs.index(tensor)] = masked
    for node in list(graph.nodes):
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


@dataclass
class OracleReport:
    """Comparison of the pruned model with the masked original."""

    passed: bool
    max_abs_diff: float
    scale: float
    tolerance: float

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"passed": self.passed, "max_abs_diff": self.max_abs_diff, "scale": self.scale,
                "tolerance": self.tolerance}


def compare(reference: ModelSource, candidate: ModelSource, feeds: dict | None = None,
            rtol: float = 1e-4, batch: int = 2, seed: int = 0) -> OracleReport:
    """Run both models on the same inputs (onnxruntime fusions off, see ``make_session``); pass when
    max |diff| <= rtol * max(1, max |reference|). ValidationError when either model fails to run."""
    try:
        ref_session = make_session(reference, "cpu", fuse=False)
        feeds = feeds or random_inputs(ref_session, batch=batch, seed=seed)
        ref = ref_session.run(None, feeds)
    except Exception as exc:
        raise ValidationError(f"onnxruntime cannot run the original model: {exc}") from None
    try:
        got = make_session(candidate, "cpu", fuse=False).run(None, feeds)
    except Exception as exc:
        raise ValidationError(f"onnxruntime cannot run the pruned model although it runs the original (please "
                              f"report this as a bug): {exc}") from None
    diff = max((max_abs_diff(r, g) for r, g in zip(ref, got)), default=0.0)
    scale = max((float(np.max(np.abs(r[np.isfinite(r)]), initial=0.0)) for r in ref), default=0.0)
    tolerance = rtol * max(1.0, scale)
    return OracleReport(passed=bool(diff <= tolerance), max_abs_diff=diff, scale=scale, tolerance=tolerance)


def max_abs_diff(ref: np.ndarray, got: np.ndarray) -> float:
    """max |ref - got|, where NaN and infinite entries must match exactly (a weight holding inf or NaN gives the
    same non-finite outputs in both models); inf when they do not, or when the shapes differ."""
    if ref.shape != got.shape:
        return float("inf")
    if not np.issubdtype(ref.dtype, np.floating):
        return float(np.max(np.abs(ref.astype(np.float64) - got), initial=0.0))
    finite = np.isfinite(ref)
    same = (np.isnan(ref) & np.isnan(got)) | (~finite & (ref == got))
    if not np.all(finite | same) or not np.all(np.isfinite(got[finite])):
        return float("inf")
    return float(np.max(np.abs(ref[finite].astype(np.float64) - got[finite]), initial=0.0))
