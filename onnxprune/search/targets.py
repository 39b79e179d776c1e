"""Targets over a ladder of plans: the most pruning whose measured outputs on held-out data still meet an accuracy
target, or the least pruning that meets a MACs budget.

A *ladder* is an ordered list of levels that prune more as they rise: uniform ratios (``ratio_ladder``: a grid of
``2 ** search_steps`` ratios up to ``max_ratio``) or the first n steps of a sensitivity allocation
(``allocation_ladder``). The search bisects the ladder, so it measures about ``search_steps`` candidates (one
onnxruntime session each). Bisection assumes that more pruning never brings the outputs closer to the original;
where noise breaks that, the plan returned is still one that was *measured* to meet the target. The lowest rung
is the smallest step: when even it misses the target, the result says so (``reached`` False) and holds no plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from onnxprune.apply import PruneResult
from onnxprune.errors import PruneError
from onnxprune.search.allocation import Allocation
from onnxprune.search.evaluate import Evaluator, Measurement, macs_after
from onnxprune.search.metrics import AccuracyTarget
from onnxprune.selection.select import SelectionOptions, select


@dataclass
class Ladder:
    """``levels[i]`` names rung i (a ratio, or a number of allocation steps); ``plan(i)`` is its plan and
    ``ratios(i)`` its per-group ratios (None for a uniform rung)."""

    name: str
    levels: list[float]
    plan: Callable[[int], dict[int, list[int]]]
    ratios: Callable[[int], dict[int, float] | None] = lambda i: None


def _without_targets(options: SelectionOptions) -> SelectionOptions:
    return replace(options, target_macs=None, target_params=None)


def ratio_ladder(dg, scores: dict[int, np.ndarray], options: SelectionOptions | None = None) -> Ladder:
    """Uniform ratios ``max_ratio * i / 2**search_steps`` (i >= 1; at most 0.99) under ``options``."""
    options = _without_targets(options or SelectionOptions())
    top = min(options.max_ratio, 0.99)
    count = 2 ** options.search_steps
    levels = [top * i / count for i in range(1, count + 1)]
    return Ladder("ratio", levels, lambda i: select(dg, scores, replace(options, ratio=levels[i])))


def allocation_ladder(dg, scores: dict[int, np.ndarray], allocation: Allocation,
                      options: SelectionOptions | None = None, substeps: int = 4) -> Ladder:
    """The first n steps of ``allocation``, in ``substeps`` parts per step (``Allocation.ratios``: level 2.25 is
    two steps and a quarter of the third); groups it never reaches stay whole."""
    options = replace(_without_targets(options or SelectionOptions()), ratio=0.0, global_ranking=False)
    levels = [k / substeps for k in range(1, len(allocation.steps) * substeps + 1)]

    def ratios(i: int) -> dict[int, float]:
        return allocation.ratios(levels[i])

    return Ladder("steps", levels, lambda i: select(dg, scores, replace(options, group_ratios=ratios(i))), ratios)


@dataclass
class TargetResult:
    """What a target search reached.

    groups: the plan found (empty when not reached). level / level_name: its rung (a ratio, or allocation steps).
    reached: whether a measured candidate met the target. measurement: the chosen candidate's (or, when not
    reached, the smallest step's) measurement on the evaluator's data; original: the unpruned model's.
    trials: every candidate measured, in order. message: one human line saying what was reached.
    pruned: the chosen candidate as it was measured (refined when the evaluator has a refine step): the model to
    write, so a reconstruction need not run again.
    """

    groups: dict[int, list[int]]
    level: float
    level_name: str
    reached: bool
    measurement: Measurement | None
    original: Measurement
    group_ratios: dict[int, float] | None = None
    trials: list[dict] = field(default_factory=list)
    message: str = ""
    pruned: PruneResult | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready form (the ``--report`` entry)."""
        return {"reached": self.reached, "level": self.level, "level_name": self.level_name,
                "measurement": self.measurement.to_dict() if self.measurement else None,
                "original": self.original.to_dict(), "trials": self.trials, "message": self.message,
                "group_ratios": {str(g): r for g, r in (self.group_ratios or {}).items()}}


def _last_true(count: int, ok: Callable[[int], bool]) -> int:
    """The highest i in [0, count) with ok(i), bisecting on the assumption that ok holds below some rung; -1 when
    ok(0) fails (then rung 0 was tried)."""
    lo, hi = -1, count
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def search_accuracy(ladder: Ladder, evaluator: Evaluator, target: AccuracyTarget,
                    progress: Callable[[str], None] = lambda message: None) -> TargetResult:
    """The highest rung of ``ladder`` whose candidate, measured by ``evaluator`` (held-out data), meets ``target``.
    A candidate the handlers cannot apply counts as missing the target."""
    target.check(evaluator.original.metrics)
    trials: list[dict] = []
    measured: dict[int, Measurement] = {}
    kept: dict[int, PruneResult | None] = {}  # the highest rung that held so far, as measured

    def ok(i: int) -> bool:
        groups = ladder.plan(i)
        try:
            measurement, pruned = evaluator.measure(groups)
        except PruneError as exc:
            trials.append({ladder.name: ladder.levels[i], "error": str(exc), "holds": False})
            return False
        measured[i] = measurement
        holds = target.holds(measurement.metrics)
        if holds and all(i > k for k in kept):
            kept.clear()
            kept[i] = pruned
        trials.append({ladder.name: ladder.levels[i], **measurement.to_dict(), "holds": holds})
        progress(f"{ladder.name} {ladder.levels[i]:g}: {measurement.metrics.format()}, MACs "
                 f"{measurement.macs / max(evaluator.original.macs, 1):.1%} -> {'meets' if holds else 'misses'} "
                 f"the target")
        return holds

    best = _last_true(len(ladder.levels), ok) if ladder.levels else -1
    if best < 0:
        first = measured.get(0)
        missed = f"({first.metrics.format()})" if first else "(the handlers cannot apply it)"
        what = f"{ladder.name} {ladder.levels[0]:g}" if ladder.levels else "(nothing is prunable)"
        return TargetResult({}, 0.0, ladder.name, False, first, evaluator.original, None, trials,
                            f"target {target.describe()} missed even at the smallest step, {what} {missed}")
    chosen = measured[best]
    message = (f"target {target.describe()} met at {ladder.name} {ladder.levels[best]:g}: {chosen.metrics.format()}"
               f"; MACs {chosen.macs / max(evaluator.original.macs, 1):.1%} of the original")
    return TargetResult(ladder.plan(best), ladder.levels[best], ladder.name, True, chosen, evaluator.original,
                        ladder.ratios(best), trials, message, kept.get(best))


def search_macs(dg, ladder: Ladder, fraction: float) -> tuple[int, dict[int, list[int]], int]:
    """The lowest rung whose pruned graph keeps at most ``fraction`` of the original MACs, or the top rung when
    none does: (rung, plan, MACs). Rungs the handlers cannot apply count as missing."""
    from_graph = macs_after(dg, {})
    limit = fraction * from_graph

    def misses(i: int) -> bool:
        try:
            return macs_after(dg, ladder.plan(i)) > limit
        except PruneError:
            return True

    last_missing = _last_true(len(ladder.levels), misses)
    rung = min(last_missing + 1, len(ladder.levels) - 1)
    plan = ladder.plan(rung)
    return rung, plan, macs_after(dg, plan)
