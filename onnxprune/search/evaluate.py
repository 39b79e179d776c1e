"""Measure pruned candidates: apply a plan, optionally refine it (reconstruction), run it on fixed calibration
batches in one onnxruntime session and compare with the original's outputs, computed once.

``refine`` is any ``Callable[[PruneResult], PruneResult]`` the caller builds (for example a least-squares refit of
the kept weights on calibration data); it runs on every candidate before it is measured, so sensitivities and
targets are measured on the model that will be written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from onnxprune.analysis.stats import count_macs, count_params
from onnxprune.apply import PruneResult, apply_plan
from onnxprune.data import Calibration, Feeds, model_inputs
from onnxprune.errors import OnnxPruneError
from onnxprune.ir.export import export_graph
from onnxprune.reconstruct import ReconstructOptions, reconstruct
from onnxprune.runtime import make_session
from onnxprune.search.metrics import OutputMetrics, compare_outputs

Refine = Callable[[PruneResult], PruneResult]


@dataclass(frozen=True)
class Measurement:
    """One measured candidate: output metrics against the original, MACs and params, and (when timed) the median
    latency in seconds of one run over the first batch."""

    metrics: OutputMetrics
    macs: int
    params: int
    latency: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {**self.metrics.to_dict(), "macs": self.macs, "params": self.params, "latency_s": self.latency}


def split_batches(batches: Sequence[Feeds], held_out: float = 0.25) -> tuple[list[Feeds], list[Feeds]]:
    """(fit, held-out) lists of batches: the last ``held_out`` fraction of the batches (at least one) is held out
    and only ever used to measure. OnnxPruneError with fewer than two batches."""
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out is a fraction in (0, 1), got {held_out}")
    if len(batches) < 2:
        raise OnnxPruneError(f"holding out calibration data needs at least 2 batches, got {len(batches)}: give more "
                             f"samples or a smaller batch size")
    n = min(len(batches) - 1, max(1, round(len(batches) * held_out)))
    return list(batches[:-n]), list(batches[-n:])


def refit_step(dg, fit: Sequence[Feeds], options: ReconstructOptions | None = None) -> Refine:
    """A ``refine`` step that reconstructs every candidate (``onnxprune.reconstruct.reconstruct``: least-squares
    refit of the kept weights towards the original's outputs) on the ``fit`` batches only."""
    calibration = Calibration(fit=list(fit), holdout=[], inputs=model_inputs(export_graph(dg.graph, dg.loaded)))
    return lambda result: reconstruct(dg, result, calibration, options).result


def macs_after(dg, groups: dict[int, list[int]]) -> int:
    """MACs of ``dg``'s model pruned by ``groups`` (no refinement: it does not change shapes); PruneError when the
    plan cannot be applied."""
    return count_macs(apply_plan(dg, groups).graph if groups else dg.graph)


class Evaluator:
    """Measures candidates ``{group id: units}`` of ``dg`` on ``batches`` (see module doc). ``timing_runs`` > 0
    also times each candidate (median of that many runs on the first batch, after one warm-up run)."""

    def __init__(self, dg, batches: Sequence[Feeds], refine: Refine | None = None, provider: str = "cpu",
                 timing_runs: int = 0):
        if not batches:
            raise OnnxPruneError("measuring candidates needs at least one calibration batch")
        self.dg = dg
        self.batches = list(batches)
        self.refine = refine
        self.provider = provider
        self.timing_runs = timing_runs
        self.calls = 0
        session = make_session(export_graph(dg.graph, dg.loaded), provider)
        self.names = [o.name for o in session.get_outputs()]
        self.reference = [session.run(None, feeds) for feeds in self.batches]
        self.original = Measurement(self._compare(self.reference), count_macs(dg.graph),
                                    count_params(dg.graph), self._time(session))

    def prune(self, groups: dict[int, list[int]]) -> PruneResult:
        """The candidate as it would be written: applied, then refined when a ``refine`` step was given."""
        result = apply_plan(self.dg, groups)
        return self.refine(result) if self.refine is not None else result

    def __call__(self, groups: dict[int, list[int]]) -> Measurement:
        """Measure one candidate (PruneError when the plan cannot be applied)."""
        return self.measure(groups)[0]

    def measure(self, groups: dict[int, list[int]]) -> tuple[Measurement, PruneResult | None]:
        """The candidate's measurement and the candidate itself as measured (refined; None for an empty plan)."""
        self.calls += 1
        if not groups:
            return self.original, None
        result = self.prune(groups)
        session = make_session(result.exported, self.provider)
        outputs = [session.run(None, feeds) for feeds in self.batches]
        return Measurement(self._compare(outputs), count_macs(result.graph), count_params(result.graph),
                           self._time(session)), result

    def _compare(self, outputs: list[list[np.ndarray]]) -> OutputMetrics:
        return compare_outputs(self.reference, outputs, self.names)

    def _time(self, session) -> float | None:
        if self.timing_runs <= 0:
            return None
        feeds = self.batches[0]
        session.run(None, feeds)
        times = []
        for _ in range(self.timing_runs):
            start = time.perf_counter()
            session.run(None, feeds)
            times.append(time.perf_counter() - start)
        return float(np.median(times))
