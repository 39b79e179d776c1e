"""Sequential reconstruction (DESIGN.md section 7): refit every consumer of pruned channels, level by level in
topological order, on the partially refit model's own activations, towards the original model's outputs.

A consumer's level is the number of refit consumers on the longest path above its input; the consumers of one
level are independent, so one onnxruntime pass of the current pruned model and one of the original collect the
inputs of all of them. Gram matrices are accumulated chunk by chunk (see ``gram``) and solved (``refit``); the
refit weights are written into a copy of the pruned graph before the next level runs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.analysis import DependencyGraph
from onnxprune.apply import PruneResult
from onnxprune.data import Calibration, prepare_calibration
from onnxprune.ir.export import export_graph
from onnxprune.ir.graph import copy_graph
from onnxprune.progress import track
from onnxprune.reconstruct.activations import collect
from onnxprune.reconstruct.consumers import Consumer, find_consumers
from onnxprune.reconstruct.gram import GramAccumulator
from onnxprune.reconstruct.refit import METHODS, augmented, solve, squared_error


@dataclass
class ReconstructOptions:
    """method: 'ridge' (refit kept weights and bias) or 'bias' (bias only). alpha: ridge strength relative to the
    mean diagonal of XᵀX, pulling weights towards the pruned ones. holdout: fraction of the calibration samples
    held out for measuring. batch_size: samples per onnxruntime run (a model with a fixed batch gets its own).
    chunk_elements: design-matrix entries handled at once (memory bound). seed: for the holdout split."""

    method: str = "ridge"
    alpha: float = 1e-3
    holdout: float = 0.2
    batch_size: int = 16
    chunk_elements: int = 1 << 22
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown reconstruction method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")


@dataclass
class LayerFit:
    """One refit consumer: relative squared error of its outputs (vs the original layer, over its outputs' energy
    around their mean, on the fitting samples) before and after the refit."""

    node: str
    op: str
    level: int
    rows: int
    error_before: float
    error_after: float

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return dict(self.__dict__)


@dataclass
class Reconstruction:
    """The refit pruned model (``result``), per-layer errors, and notes on consumers left alone. How far the model
    drifts from the original is measured by the caller with the one comparer (``onnxprune.validation``), on
    ``calibration.holdout``: reconstruction only fits."""

    result: PruneResult
    layers: list[LayerFit]
    notes: list[str]
    calibration: Calibration
    seconds: float = 0.0
    options: ReconstructOptions = field(default_factory=ReconstructOptions)

    def to_dict(self) -> dict:
        """JSON-ready form with stable keys."""
        return {"method": self.options.method, "alpha": self.options.alpha,
                "fit_samples": self.calibration.fit_samples, "holdout_samples": self.calibration.holdout_samples,
                "layers": [f.to_dict() for f in self.layers], "notes": self.notes, "seconds": self.seconds}

    def format(self) -> str:
        """A short human summary."""
        lines = [f"reconstruction ({self.options.method}): {len(self.layers)} layers refit on "
                 f"{self.calibration.fit_samples} samples in {self.seconds:.1f} s"]
        for fit in self.layers:
            lines.append(f"  {fit.op} {fit.node}: error {fit.error_before:.3g} -> {fit.error_after:.3g}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def levels(graph: gs.Graph, consumers: list[Consumer]) -> dict[int, list[Consumer]]:
    """Consumers by level (refit consumers on the longest path above their input); ``graph`` in topological order."""
    by_node = {id(c.node): c for c in consumers}
    depth: dict[str, int] = {}
    found: dict[int, list[Consumer]] = defaultdict(list)
    for node in graph.nodes:
        level = max((depth.get(t.name, 0) for t in node.inputs), default=0)
        consumer = by_node.get(id(node))
        if consumer is not None:
            found[level].append(consumer)
        for t in node.outputs:
            depth[t.name] = level + (consumer is not None)
    return dict(found)


def _accumulate(consumer: Consumer, gram: GramAccumulator | None, target: np.ndarray, xp: np.ndarray,
                xo: np.ndarray, budget: int) -> GramAccumulator:
    axis = consumer.batch_axis
    count = xo.shape[axis]
    per_sample = max(1, xo.size // max(count, 1) * consumer.expansion)
    step = max(1, budget // per_sample)
    for start in range(0, count, step):
        part = range(start, min(start + step, count))
        a = consumer.design(np.take(xp, part, axis=axis))
        b = consumer.design_original(np.take(xo, part, axis=axis))
        if gram is None:
            gram = GramAccumulator(target, a.shape[2])
        gram.add(a, b)
    return gram


def reconstruct(dg: DependencyGraph, result: PruneResult, calib, options: ReconstructOptions | None = None,
                ) -> Reconstruction:
    """Refit ``result`` (``apply_plan(dg, plan)``) on calibration data ``calib`` (anything
    ``onnxprune.data.prepare_calibration`` reads, or a Calibration) so each refit layer's output matches the
    original model's; returns a Reconstruction holding a new PruneResult (``result`` is left untouched)."""
    options = options or ReconstructOptions()
    started = time.perf_counter()
    original = export_graph(dg.graph, dg.loaded)
    calibration = prepare_calibration(original, calib, holdout=options.holdout, batch_size=options.batch_size,
                                      seed=options.seed)
    graph = copy_graph(result.graph)
    graph.toposort()
    consumers, notes = find_consumers(graph, result.removed)
    originals = {n.outputs[0].name: n for n in dg.graph.nodes if n.outputs}
    sources = {id(c.node): originals[c.node.outputs[0].name] for c in consumers}
    dtypes = {name: t.dtype for name, t in dg.graph.tensors().items() if isinstance(t, gs.Variable)}
    fits = []
    for level, group in track(sorted(levels(graph, consumers).items()), "reconstructing layers"):
        names = sorted({c.x for c in group})
        current = export_graph(graph, dg.loaded)
        targets = {id(c): _target(c, sources[id(c.node)]) for c in group}
        grams: dict[int, GramAccumulator | None] = {id(c): None for c in group}
        for xp, xo in zip(collect(current, names, dtypes, pruned_feeds(calibration.fit, result.removed)),
                          collect(original, names, dtypes, calibration.fit)):
            for c in group:
                grams[id(c)] = _accumulate(c, grams[id(c)], targets[id(c)], xp[c.x], xo[c.x],
                                           options.chunk_elements)
        for c in group:
            fits.append(_refit(graph, c, grams[id(c)], level, options))
    graph.cleanup()
    graph.toposort()
    refit = PruneResult(graph=graph, removed=result.removed, plan=result.plan, loaded=result.loaded)
    return Reconstruction(refit, fits, notes, calibration, time.perf_counter() - started, options)


def pruned_feeds(batches: list, removed: dict) -> list:
    """The feeds as the pruned model takes them: where the plan pruned an axis of a graph input (allowed I/O axes,
    e.g. a decoder's KV-cache heads), that input's removed indices are dropped from the batch too."""
    cuts = {}
    for axis, indices in removed.items():
        if len(indices):
            cuts.setdefault(axis.tensor, []).append((axis.axis, indices))
    if not cuts or not any(name in cuts for feeds in batches for name in feeds):
        return batches
    sliced = []
    for feeds in batches:
        feeds = dict(feeds)
        for name, axes in cuts.items():
            if name in feeds:
                for axis, indices in axes:
                    feeds[name] = np.delete(feeds[name], indices, axis=axis)
        sliced.append(feeds)
    return sliced


def _target(consumer: Consumer, source: gs.Node) -> np.ndarray:
    """The original node's weights and bias of the kept outputs, as [g, out, fb+1]."""
    consumer.bind(source)
    weight, bias = consumer.kept_original(np.asarray(source.inputs[1].values), consumer.bias(source))
    return augmented(*consumer.matrices(weight, bias))


def _refit(graph: gs.Graph, consumer: Consumer, gram: GramAccumulator, level: int,
           options: ReconstructOptions) -> LayerFit:
    pruned = augmented(*consumer.matrices(np.asarray(consumer.weight.values), consumer.bias(consumer.node)))
    matrix = solve(gram, pruned, options.method, options.alpha)
    before, energy = squared_error(gram, pruned)
    after, _ = squared_error(gram, matrix)
    consumer.write(graph, matrix[..., :-1], matrix[..., -1])
    scale = energy if energy > 0 else 1.0
    return LayerFit(consumer.node.name, consumer.node.op, level, gram.rows, before / scale, after / scale)
