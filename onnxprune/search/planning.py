"""Planning: score the groups, select units, back off from groups the handlers cannot rewrite, and for
MACs/params targets search the ratio by bisection, measuring each candidate's pruned graph.

With ``allocate="sensitivity"`` the ratios differ per group: each group's damage is measured on calibration data
(``onnxprune.search.sensitivity``), the greedy allocation orders the steps (``onnxprune.search.allocation``), and
the number of steps is searched for the MACs budget: ``target_macs``, or without one the MACs that the uniform
``ratio`` would leave (the same budget, spent where it hurts least). ``plan_for_target`` searches the most pruning
that keeps an accuracy target on held-out calibration data (``onnxprune.search.targets``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import replace

from onnxprune.analysis.stats import count_macs, count_params
from onnxprune.apply import apply_plan
from onnxprune.data import Calibration, Feeds, calibration_batches, prepare_calibration
from onnxprune.errors import OnnxPruneError, PruneError
from onnxprune.ir.export import export_graph
from onnxprune.reconstruct import ReconstructOptions
from onnxprune.scoring import DATA_CRITERIA, ImportanceOptions, Scores, compute_importance
from onnxprune.search.allocation import allocate as greedy_allocation
from onnxprune.search.evaluate import Evaluator, Refine, refit_step, split_batches
from onnxprune.search.metrics import AccuracyTarget
from onnxprune.search.sensitivity import DEFAULT_RATIOS, measure_sensitivity
from onnxprune.search.targets import TargetResult, allocation_ladder, ratio_ladder, search_accuracy, search_macs
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
        apply_plan(dg, plan)  # big models are sliced lazily (onnxprune.apply): this trial copies no weight
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


ALLOCATIONS = ("uniform", "sensitivity")
OPTIMIZE = ("macs", "latency")
TIMING_RUNS = 10  # runs per candidate when optimising measured latency (median taken)


def _importance(criterion: str | ImportanceOptions, options: SelectionOptions) -> ImportanceOptions:
    if isinstance(criterion, ImportanceOptions):
        return criterion
    return ImportanceOptions(criterion=criterion, seed=options.seed)


def split_calibration(dg, calib, importance: ImportanceOptions, held_out: float) -> tuple[list[Feeds], list[Feeds]]:
    """(fit, held-out) batches from ``calib``: a Calibration's own parts (it must hold some out); a list of feed
    dicts split by ``split_batches``; anything else read by ``onnxprune.data.prepare_calibration`` with a seeded
    ``held_out`` fraction of the samples held out. None (no data): OnnxPruneError when ``held_out`` > 0, else
    random inputs (with calibration_batches' warning)."""
    if isinstance(calib, Calibration):
        if held_out and not calib.holdout:
            raise OnnxPruneError("the calibration data holds nothing out; an accuracy target is measured on "
                                 "held-out samples only")
        return calib.fit, calib.holdout
    if isinstance(calib, list):
        return split_batches(calib, held_out) if held_out else (calib, [])
    model = export_graph(dg.graph, dg.loaded)
    if calib is None:
        if held_out:
            raise OnnxPruneError("an accuracy target needs calibration data (--calib) to measure it on")
        return calibration_batches(model, None, batch_size=importance.batch_size, samples=importance.samples,
                                   seed=importance.seed), []
    calibration = prepare_calibration(model, calib, holdout=held_out, batch_size=importance.batch_size,
                                      seed=importance.seed)
    return calibration.fit, calibration.holdout


def _refine(dg, fit: list[Feeds], refine: Refine | None, reconstruct: ReconstructOptions | None) -> Refine | None:
    if refine is not None and reconstruct is not None:
        raise ValueError("give refine or reconstruct, not both")
    return refit_step(dg, fit, reconstruct) if reconstruct is not None else refine


def _check_choices(allocate: str, optimize: str) -> None:
    if allocate not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocate!r}; choose from {', '.join(ALLOCATIONS)}")
    if optimize not in OPTIMIZE:
        raise ValueError(f"unknown optimisation {optimize!r}; choose from {', '.join(OPTIMIZE)}")


def _prunable_scores(dg, scores: Scores, options: SelectionOptions, notes: list[str]) -> Scores:
    """Scores without the groups whose widest selection the handlers cannot rewrite (noted)."""
    widest = select(dg, scores, replace(options, ratio=min(options.max_ratio, 0.99), target_macs=None,
                                        target_params=None, group_ratios=None))
    kept = drop_failing_groups(dg, widest, notes)
    out = Scores({g: v for g, v in scores.items() if g not in set(widest) - set(kept)})
    out.notes = scores.notes
    return out


def _removed_fraction(dg, groups: dict[int, list[int]], scores) -> float:
    total = sum(dg.group(g).size for g in scores)
    return sum(len(u) for u in groups.values()) / total if total else 0.0


def sensitivity_ladder(dg, scores: Scores, options: SelectionOptions, batches: list[Feeds], refine: Refine | None,
                       optimize: str, ratios: Iterable[float], notes: list[str],
                       progress: Callable[[str], None] = lambda message: None):
    """Measure every group's sensitivity on ``batches``, allocate greedily by ``optimize`` ('macs' or 'latency')
    and return the allocation ladder (see ``onnxprune.search.targets``) and the allocation."""
    evaluator = Evaluator(dg, batches, refine=refine, timing_runs=TIMING_RUNS if optimize == "latency" else 0)
    curves = measure_sensitivity(dg, scores, evaluator, ratios, options, progress)
    notes.extend(f"group {g}: {c.note}" for g, c in sorted(curves.items()) if c.note)
    allocation = greedy_allocation(curves, evaluator.original, optimize)
    notes.append(f"sensitivity: {evaluator.calls} candidates measured on {len(batches)} calibration batches, "
                 f"{len(allocation.steps)} allocation steps by {optimize}")
    return allocation_ladder(dg, scores, allocation, options), allocation


def plan_pruning(dg, criterion: str | ImportanceOptions = "l2", options: SelectionOptions | None = None,
                 calib=None, *, allocate: str = "uniform", optimize: str = "macs", refine: Refine | None = None,
                 reconstruct: ReconstructOptions | None = None, sensitivity_ratios: Iterable[float] = DEFAULT_RATIOS,
                 progress: Callable[[str], None] = lambda message: None) -> Plan:
    """Score the prunable groups by ``criterion`` (a name or ImportanceOptions), select units by ``options`` and
    return the Plan. ``calib``: calibration data (see ``compute_importance``; a list is taken as batches).

    ``allocate="sensitivity"``: per-group ratios from measured sensitivity (module doc), ordered by MACs or, with
    ``optimize="latency"``, by measured latency saved; ``refine`` (any PruneResult -> PruneResult step) or
    ``reconstruct`` (least-squares refit on the calibration data, see ``onnxprune.reconstruct``) runs on every
    measured candidate; ``sensitivity_ratios``: the ratios each group is measured at. ``calib`` may also be a
    ``onnxprune.data.Calibration`` (its fitting part is used)."""
    options = options or SelectionOptions()
    _check_choices(allocate, optimize)
    if allocate == "uniform":
        return _plan_uniform(dg, criterion, options, calib)
    if options.target_params is not None:
        raise ValueError("sensitivity allocation searches a MACs budget; target_params is not supported with it")
    importance = _importance(criterion, options)
    batches, _ = split_calibration(dg, calib, importance, 0.0)
    scores = compute_importance(dg, importance, calib=batches)
    notes = [f"group {gid}: {note}" for gid, note in sorted(scores.notes.items())]
    scores = _prunable_scores(dg, scores, options, notes)
    refine = _refine(dg, batches, refine, reconstruct)
    ladder, _ = sensitivity_ladder(dg, scores, options, batches, refine, optimize, sensitivity_ratios, notes,
                                   progress)
    if not ladder.levels:
        notes.append("sensitivity: no group could be measured; nothing pruned")
        return Plan(groups={}, criterion=importance.criterion, ratio=0.0, scores=scores, notes=notes)
    before = count_macs(dg.graph)
    if options.target_macs is not None:
        fraction = options.target_macs
    else:  # the budget the uniform ratio would spend
        fraction = measure(dg, drop_failing_groups(dg, select(dg, scores, options), []))[0] / max(before, 1)
    rung, groups, macs = search_macs(dg, ladder, fraction)
    groups = drop_failing_groups(dg, groups, notes)
    if macs > fraction * before:
        notes.append(f"target not reached: sensitivity allocation keeps {macs / max(before, 1):.1%} of the MACs "
                     f"at most (wanted {fraction:.1%})")
    ratios = ladder.ratios(rung) or {}
    notes.append(f"sensitivity allocation: {int(ladder.levels[rung])} steps, MACs {macs / max(before, 1):.1%}; "
                 "per-group ratios " + ", ".join(f"{g}: {r:g}" for g, r in sorted(ratios.items())))
    return Plan(groups=groups, criterion=importance.criterion, ratio=_removed_fraction(dg, groups, scores),
                scores=scores, notes=notes)


def plan_for_target(dg, target: AccuracyTarget, criterion: str | ImportanceOptions = "l2",
                    options: SelectionOptions | None = None, calib=None, *, allocate: str = "uniform",
                    optimize: str = "macs", refine: Refine | None = None,
                    reconstruct: ReconstructOptions | None = None, held_out: float = 0.2,
                    sensitivity_ratios: Iterable[float] = DEFAULT_RATIOS,
                    progress: Callable[[str], None] = lambda message: None) -> tuple[Plan, TargetResult]:
    """The most pruning whose outputs on held-out calibration data meet ``target``: (Plan, TargetResult).

    The calibration data is split (``split_calibration``: ``held_out`` of it is held out); importance, sensitivity
    and ``reconstruct`` (or ``refine``) use the rest, and every candidate of the search is measured on the
    held-out part only. The
    global level searched is the uniform ratio (``allocate="uniform"``) or the number of sensitivity-allocation
    steps. When even the smallest step misses, ``TargetResult.reached`` is False and the Plan is empty (the CLI
    exits 1). ``options.target_macs`` / ``target_params`` are ignored here."""
    options = options or SelectionOptions()
    _check_choices(allocate, optimize)
    importance = _importance(criterion, options)
    fit, held = split_calibration(dg, calib, importance, held_out)
    scores = compute_importance(dg, importance, calib=fit if importance.criterion in DATA_CRITERIA else None)
    notes = [f"group {gid}: {note}" for gid, note in sorted(scores.notes.items())]
    scores = _prunable_scores(dg, scores, options, notes)
    refine = _refine(dg, fit, refine, reconstruct)
    if allocate == "sensitivity":
        ladder, _ = sensitivity_ladder(dg, scores, options, fit, refine, optimize, sensitivity_ratios, notes,
                                       progress)
    else:
        ladder = ratio_ladder(dg, scores, options)
    evaluator = Evaluator(dg, held, refine=refine, timing_runs=TIMING_RUNS if optimize == "latency" else 0)
    result = search_accuracy(ladder, evaluator, target, progress)
    notes.append(result.message)
    ratio = result.level if ladder.name == "ratio" else _removed_fraction(dg, result.groups, scores)
    return Plan(groups=result.groups, criterion=importance.criterion, ratio=ratio, scores=scores,
                notes=notes), result


def _plan_uniform(dg, criterion, options: SelectionOptions, calib) -> Plan:
    importance = _importance(criterion, options)
    scores = compute_importance(dg, importance, calib=calib)
    notes = [f"group {gid}: {note}" for gid, note in sorted(scores.notes.items())]
    if options.target_macs is not None or options.target_params is not None:
        ratio, groups = _search_ratio(dg, scores, options, notes)
    else:
        ratio, groups = options.ratio, drop_failing_groups(dg, select(dg, scores, options), notes)
    return Plan(groups=groups, criterion=importance.criterion, ratio=ratio, scores=scores, notes=notes)
