"""Planning: score the groups, select units, back off from groups the handlers cannot rewrite, and for
MACs/params targets search the ratio by bisection, measuring each candidate's pruned graph."""

from __future__ import annotations

import warnings
from dataclasses import replace

from onnxprune.analysis.stats import count_macs, count_params
from onnxprune.apply import apply_plan
from onnxprune.errors import PruneError
from onnxprune.scoring import ImportanceOptions, compute_importance
from onnxprune.selection.plan import Plan
from onnxprune.selection.select import SelectionOptions, select


def measure(dg, plan: dict[int, list[int]]) -> tuple[int, int]:
    """(MACs, params) of ``dg``'s model pruned by ``plan`` (the unpruned model for an empty plan)."""
    if not plan:
        return count_macs(dg.graph), count_params(dg.graph)
    graph = apply_plan(dg, plan).graph
    return count_macs(graph), count_params(graph)


def drop_failing_groups(dg, plan: dict[int, list[int]], notes: list[str]) -> dict[int, list[int]]:
    """Back off from groups whose pruning the handlers cannot apply (PruneError), one by one."""
    try:
        apply_plan(dg, plan)
        return plan
    except PruneError:
        pass
    kept = {}
    for gid, units in plan.items():
        try:
            apply_plan(dg, {gid: units})
            kept[gid] = units
        except PruneError as exc:
            notes.append(f"group {gid} left whole: {exc}")
    return kept


def _meets(dg, plan, before: tuple[int, int], options: SelectionOptions) -> bool:
    macs, params = measure(dg, plan)
    ok_macs = options.target_macs is None or macs <= options.target_macs * before[0]
    ok_params = options.target_params is None or params <= options.target_params * before[1]
    return ok_macs and ok_params


def _search_ratio(dg, scores, options: SelectionOptions, notes: list[str]) -> tuple[float, dict]:
    before = measure(dg, {})
    lo, hi = 0.0, min(options.max_ratio, 0.99)
    widest = select(dg, scores, replace(options, ratio=hi))
    best = drop_failing_groups(dg, widest, notes)  # groups the handlers cannot rewrite stay out of the search
    scores = {g: v for g, v in scores.items() if g not in set(widest) - set(best)}
    if not _meets(dg, best, before, options):
        warnings.warn(f"the MACs/params target cannot be reached at ratio {hi:.2f}; using that ratio", stacklevel=3)
        notes.append(f"target not reached: ratio {hi:.2f} is the most the options allow")
        return hi, best
    for _ in range(options.search_steps):
        mid = (lo + hi) / 2
        candidate = select(dg, scores, replace(options, ratio=mid))
        if _meets(dg, candidate, before, options):
            hi, best = mid, candidate
        else:
            lo = mid
    return hi, best


def plan_pruning(dg, criterion: str | ImportanceOptions = "l2", options: SelectionOptions | None = None,
                 calib=None) -> Plan:
    """Score the prunable groups by ``criterion`` (a name or ImportanceOptions), select units by ``options`` and
    return the Plan. ``calib``: calibration data for data-driven criteria (see ``compute_importance``)."""
    options = options or SelectionOptions()
    importance = criterion if isinstance(criterion, ImportanceOptions) else ImportanceOptions(
        criterion=criterion, seed=options.seed)
    scores = compute_importance(dg, importance, calib=calib)
    notes = [f"group {gid}: {note}" for gid, note in sorted(scores.notes.items())]
    if options.target_macs is not None or options.target_params is not None:
        ratio, groups = _search_ratio(dg, scores, options, notes)
    else:
        ratio, groups = options.ratio, drop_failing_groups(dg, select(dg, scores, options), notes)
    return Plan(groups=groups, criterion=importance.criterion, ratio=ratio, scores=scores, notes=notes)
