"""Plan: the units chosen for removal, how they were chosen, and the JSON that lets a user apply the same pruning
to the framework's original weights. ``plan_pruning`` runs importance and selection and, for MACs/params targets,
searches the ratio by bisection, measuring each candidate's pruned graph."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.errors import PruneError
from onnxprune.importance import ImportanceOptions, Scores, compute_importance
from onnxprune.provenance import source_entries
from onnxprune.selection import SelectionOptions, select


@dataclass
class Plan:
    """{group id: removed units} (``groups``, what ``DependencyGraph.prune`` takes) and how it was chosen."""

    groups: dict[int, list[int]]
    criterion: str
    ratio: float
    scores: Scores = field(default_factory=Scores, repr=False)
    notes: list[str] = field(default_factory=list)

    def to_dict(self, dg) -> dict:
        """JSON-ready plan: the groups pruned (root, removed units, members with removed indices); per initializer,
        its shape and the kept indices of every pruned axis; and under ``parameters`` the same for the framework
        parameters that folded initializers were transposed or copied from (names as the exporter wrote them)."""
        removed = dg.resolve(self.groups)
        groups = []
        for gid, units in sorted(self.groups.items()):
            group = dg.group(gid)
            groups.append({"id": gid, "root": {"tensor": group.root.tensor, "axis": group.root.axis},
                           "size": group.size, "removed": [int(u) for u in units],
                           "members": [{"tensor": ax.tensor, "axis": ax.axis,
                                        "removed": group.indices(ax, units).tolist()} for ax in group.members]})
        initializers: dict[str, dict] = {}
        for axis, idx in sorted(removed.items()):
            tensor = dg.tensors[axis.tensor]
            if isinstance(tensor, gs.Constant):
                entry = initializers.setdefault(axis.tensor, {"shape": list(tensor.shape), "kept": {}})
                size = tensor.shape[axis.axis]
                entry["kept"][str(axis.axis)] = np.setdiff1d(np.arange(size), idx).tolist()
        sources = getattr(dg.loaded, "sources", None) or {}
        return {"criterion": self.criterion, "ratio": self.ratio, "groups": groups, "initializers": initializers,
                "parameters": source_entries(sources, initializers),
                "notes": list(self.notes)}


def measure(dg, plan: dict[int, list[int]]) -> tuple[int, int]:
    """(MACs, params) of ``dg``'s model pruned by ``plan`` (the unpruned model for an empty plan)."""
    from onnxprune.pruning import apply_plan
    from onnxprune.stats import count_macs, count_params

    if not plan:
        return count_macs(dg.graph), count_params(dg.graph)
    graph = gs.import_onnx(apply_plan(dg, plan, check=False).model)
    return count_macs(graph), count_params(graph)


def drop_failing_groups(dg, plan: dict[int, list[int]], notes: list[str]) -> dict[int, list[int]]:
    """Back off from groups whose pruning the handlers cannot apply (PruneError), one by one."""
    from onnxprune.pruning import apply_plan

    try:
        apply_plan(dg, plan, check=False)
        return plan
    except PruneError:
        pass
    kept = {}
    for gid, units in plan.items():
        try:
            apply_plan(dg, {gid: units}, check=False)
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
