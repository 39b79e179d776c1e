"""Sensitivity: for every prunable group and a few candidate ratios, prune that group alone (its lowest-scored units,
as ``select`` would choose them) and measure the damage to the model's outputs on calibration data, and what it
saves (MACs, and latency when the evaluator times candidates). One onnxruntime session per (group, ratio).

Fragile groups (stems, bottlenecks, heads) show a large damage per MAC saved; ``onnxprune.search.allocation``
gives them low ratios and the redundant ones high ratios.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from onnxprune.errors import PruneError
from onnxprune.progress import track
from onnxprune.search.evaluate import Evaluator, Measurement
from onnxprune.selection.select import SelectionOptions, select

DEFAULT_RATIOS = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class SensitivityPoint:
    """One group pruned alone at ``ratio``: the units removed and the measurement."""

    ratio: float
    units: tuple[int, ...]
    measurement: Measurement

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"ratio": self.ratio, "removed": len(self.units), **self.measurement.to_dict()}


@dataclass
class GroupSensitivity:
    """The measured curve of one group, points in increasing ratio (and removed count); ``note`` says why it stops
    early (the handlers could not rewrite a candidate)."""

    gid: int
    size: int
    points: list[SensitivityPoint] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"group": self.gid, "size": self.size, "points": [p.to_dict() for p in self.points],
                "note": self.note}


def measure_sensitivity(dg, scores: dict[int, np.ndarray], evaluator: Evaluator,
                        ratios: Iterable[float] = DEFAULT_RATIOS, options: SelectionOptions | None = None,
                        progress: Callable[[str], None] = lambda message: None) -> dict[int, GroupSensitivity]:
    """{group id: GroupSensitivity} for every group ``select`` would prune under ``options`` (its ignores, caps,
    rounding; ``ratio``, targets and per-group ratios are replaced by each candidate ratio). A ratio that removes
    no more units than the previous one is skipped."""
    options = options or SelectionOptions()
    base = replace(options, global_ranking=False, heads_ratio=None, group_ratios=None, target_macs=None,
                   target_params=None)
    ratios = sorted(set(ratios))
    found: dict[int, GroupSensitivity] = {}
    for k, gid in enumerate(track(sorted(scores), "measuring group sensitivity")):
        curve = GroupSensitivity(gid, dg.group(gid).size)
        previous = 0
        for ratio in ratios:
            units = select(dg, {gid: scores[gid]}, replace(base, ratio=ratio)).get(gid, [])
            if len(units) <= previous:
                continue
            try:
                measurement = evaluator({gid: units})
            except PruneError as exc:
                curve.note = f"left whole from ratio {ratio:g}: {exc}"
                break
            curve.points.append(SensitivityPoint(ratio, tuple(units), measurement))
            previous = len(units)
        if curve.points or curve.note:
            found[gid] = curve
        progress(f"sensitivity: group {gid} ({k + 1}/{len(scores)}): "
                 + ", ".join(f"{p.ratio:g} -> drift {p.measurement.metrics.drift:.3g}" for p in curve.points))
    return found
