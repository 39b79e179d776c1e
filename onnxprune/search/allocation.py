"""Allocation: turn measured sensitivity curves into per-group ratios.

Greedy on the curves, assuming damages add (output-error energies of independent groups nearly do, see
``onnxprune.search.metrics``): starting from nothing pruned, repeatedly take the step — one group moved from its
current point to any later point of its curve — with the least added damage per cost saved (MACs, or measured
latency). Allowing a jump over several points lets a group whose curve is not convex be reached past a costly
first step. The steps form one sequence, so "the first n steps" is a family of plans that prune more as n grows;
``onnxprune.search.targets`` searches n for a MACs or accuracy target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from onnxprune.search.evaluate import Measurement
from onnxprune.search.sensitivity import GroupSensitivity, SensitivityPoint

COSTS = ("macs", "latency")


@dataclass(frozen=True)
class AllocationStep:
    """Group ``gid`` goes to ``ratio``, adding ``damage`` (output-error energy) and saving ``saving`` (MACs or
    seconds), both as measured with the group pruned alone."""

    gid: int
    ratio: float
    damage: float
    saving: float


@dataclass
class Allocation:
    """The greedy order of steps; ``total`` is the original model's cost (MACs or seconds) in the same unit."""

    steps: list[AllocationStep]
    cost: str
    total: float

    def ratios(self, level: float) -> dict[int, float]:
        """{group id: ratio} after the first ``level`` steps (groups not reached are absent). A fractional level
        takes that part of the next step: its group's ratio moves that far from where it stood towards the step's
        ratio, so budgets between two steps can be met closely."""
        n = int(level)
        found: dict[int, float] = {}
        for step in self.steps[:n]:
            found[step.gid] = step.ratio
        if level > n and n < len(self.steps):
            step = self.steps[n]
            start = found.get(step.gid, 0.0)
            found[step.gid] = start + (level - n) * (step.ratio - start)
        return found

    def predicted(self, n: int) -> tuple[float, float]:
        """(added damage, fraction of the cost saved) after ``n`` steps, as the sum of the single-group figures."""
        damage = sum(s.damage for s in self.steps[:n])
        saving = sum(s.saving for s in self.steps[:n])
        return damage, saving / self.total if self.total > 0 else 0.0

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"cost": self.cost, "total": self.total,
                "steps": [{"group": s.gid, "ratio": s.ratio, "damage": s.damage, "saving": s.saving}
                          for s in self.steps]}


def _saving(point: SensitivityPoint, original: Measurement, cost: str) -> float:
    if cost == "macs":
        return float(original.macs - point.measurement.macs)
    if point.measurement.latency is None or original.latency is None:
        raise ValueError("latency allocation needs timed measurements (an Evaluator with timing_runs > 0)")
    return original.latency - point.measurement.latency


def allocate(sensitivity: dict[int, GroupSensitivity], original: Measurement, cost: str = "macs") -> Allocation:
    """The greedy allocation order over the measured curves (see module doc). Points whose damage is not finite
    (the candidate gave NaN or changed shapes) are never taken."""
    if cost not in COSTS:
        raise ValueError(f"unknown cost {cost!r}; choose from {', '.join(COSTS)}")
    curves = {gid: [(p.ratio, p.measurement.metrics.energy, _saving(p, original, cost)) for p in curve.points
                    if math.isfinite(p.measurement.metrics.energy)]
              for gid, curve in sensitivity.items()}
    at = {gid: (0.0, 0.0, -1) for gid in curves}  # (damage, saving, point index) each group stands at
    steps: list[AllocationStep] = []
    while True:
        best = None
        for gid, (damage, saving, index) in at.items():
            for j in range(index + 1, len(curves[gid])):
                ratio, d, s = curves[gid][j]
                if s <= saving:
                    continue
                added, gained = max(d - damage, 0.0), s - saving
                key = (added / gained, -gained, gid)
                if best is None or key < best[0]:
                    best = (key, gid, j, AllocationStep(gid, ratio, added, gained))
        if best is None:
            total = float(original.macs) if cost == "macs" else float(original.latency or 0.0)
            return Allocation(steps, cost, total)
        _, gid, j, step = best
        steps.append(step)
        at[gid] = (at[gid][0] + step.damage, at[gid][1] + step.saving, j)
