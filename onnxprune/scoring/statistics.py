"""Per-channel activation statistics over calibration data, collected through onnxruntime a few tensors at a time.

Only the tensors a criterion needs become extra graph outputs, ``chunk_size`` of them per session, and every
output is reduced to per-index sums (|x| and x², over every other axis) as soon as it is produced, so memory holds
one chunk of one batch at a time, never every intermediate of the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxprune.analysis import DependencyGraph
from onnxprune.axes import ChannelAxis
from onnxprune.data.calibration import Feeds
from onnxprune.ir.export import ExportedModel, export_graph
from onnxprune.runtime import make_session


@dataclass
class ChannelStats:
    """Statistics of one tensor axis, per index: sums over every other axis and every calibration sample."""

    abs_sum: np.ndarray
    sq_sum: np.ndarray
    count: int

    @property
    def mean_abs(self) -> np.ndarray:
        """Mean |x| per index."""
        return self.abs_sum / max(self.count, 1)

    @property
    def norm(self) -> np.ndarray:
        """||x||_2 per index over every sample and position (Wanda's ||X_j||)."""
        return np.sqrt(self.sq_sum)


def _reduce(values: np.ndarray, axes: Iterable[int], into: dict[int, ChannelStats]) -> None:
    data = np.asarray(values, dtype=np.float64)
    for axis in axes:
        other = tuple(k for k in range(data.ndim) if k != axis)
        count = int(data.size // max(data.shape[axis], 1))
        abs_sum, sq_sum = np.abs(data).sum(axis=other), np.square(data).sum(axis=other)
        if axis in into:
            stats = into[axis]
            stats.abs_sum += abs_sum
            stats.sq_sum += sq_sum
            stats.count += count
        else:
            into[axis] = ChannelStats(abs_sum, sq_sum, count)


def channel_statistics(dg: DependencyGraph, axes: Iterable[ChannelAxis], batches: list[Feeds], chunk_size: int = 16,
                       model: ExportedModel | None = None) -> dict[ChannelAxis, ChannelStats]:
    """Per-index statistics of every requested activation axis of ``dg``'s graph over the calibration batches.

    The requested tensors are added as graph outputs ``chunk_size`` at a time (one onnxruntime session per chunk);
    graph inputs are read from the feeds directly. Non-float tensors are skipped. ``model`` is ``dg``'s graph as
    exported when the caller already has it (its outputs are replaced). Tensors inside If/Loop/Scan bodies are
    skipped too: onnxruntime cannot output them (criteria score such groups by their other members).
    """
    by_tensor: dict[str, list[int]] = {}
    visible = dg.graph.tensors()
    for ax in axes:
        tensor = dg.tensors.get(ax.tensor)
        if ax.tensor in visible and isinstance(tensor, gs.Variable) and tensor.dtype is not None \
                and np.issubdtype(np.dtype(tensor.dtype), np.floating):
            by_tensor.setdefault(ax.tensor, []).append(ax.axis)
    found: dict[str, dict[int, ChannelStats]] = {name: {} for name in by_tensor}
    graph_inputs = {t.name for t in dg.graph.inputs}
    for name in [n for n in by_tensor if n in graph_inputs]:
        for feeds in batches:
            _reduce(feeds[name], by_tensor[name], found[name])
    names = [n for n in by_tensor if n not in graph_inputs]
    if names:
        model = model if model is not None else export_graph(dg.graph, dg.loaded)
        for start in range(0, len(names), chunk_size):
            chunk = names[start:start + chunk_size]
            del model.proto.graph.output[:]
            model.proto.graph.output.extend(
                onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(
                    np.dtype(dg.tensors[n].dtype)), None) for n in chunk)
            session = make_session(model, "cpu")
            for feeds in batches:
                for name, value in zip(chunk, session.run(chunk, feeds)):
                    _reduce(value, by_tensor[name], found[name])
    return {ChannelAxis(n, a): s for n, per_axis in found.items() for a, s in per_axis.items()}
