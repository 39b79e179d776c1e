"""Group importance (DepGraph): every member of a group scores the group's units along its own axis, the member
vectors are (optionally) normalised, reduced over the group (mean, sum, max, prod), and the result is normalised.

Defaults follow Torch-Pruning's GroupMagnitudeImportance(p=2, group_reduction="mean", normalizer="mean") so that
``l2`` ranks channels as it does: a weight member scores unit u by sum |W|^p over the unit's slice of its axis and
every other axis (squared L2 for p=2, no square root), members are not normalised one by one, and the reduced
vector is divided by its mean (which leaves the ranking inside a group alone and makes groups comparable for the
global ranking). A member whose unit slice is shorter than the root's (a grouped conv's kernel columns, shared by
every channel group) counts each of its indices once per root copy, as Torch-Pruning's channel-group averaging
does: member score = slice sum / min(k_member, k_root).

Which members count is told by handlers, never by op types here: *weights* are constants with an axis a handler
declared a producer (Conv/Gemm/MatMul weights, LSTM W) or listed in ``weight_inputs`` (LSTM R); *scales* are the
inputs listed by ``scale_inputs`` (normalisation gamma). Biases and running statistics never count (Torch-Pruning's
bias=False). A group with no weight and no scale member uses every float constant member instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnxprune.axes import ChannelAxis
from onnxprune.data.calibration import calibration_batches
from onnxprune.ir.export import export_graph
from onnxprune.scoring.criteria import CRITERIA, DATA_CRITERIA, GroupView, needed_axes, parameter_roles
from onnxprune.scoring.statistics import channel_statistics

REDUCTIONS = ("mean", "sum", "max", "prod")
NORMALIZERS = (None, "mean", "max", "sum", "lamp")

__all__ = ["CRITERIA", "DATA_CRITERIA", "REDUCTIONS", "ImportanceOptions", "Scores", "compute_importance",
           "score_groups", "parameter_roles", "needed_axes"]


@dataclass
class ImportanceOptions:
    """How to score groups.

    criterion: one of CRITERIA. reduction: how member vectors combine (mean, sum, max, prod).
    member_normalizer: normalise each member's vector before the reduction (None, 'mean', 'max', 'sum');
        'auto' = None for weight criteria (Torch-Pruning parity) and 'mean' for 'activation' / 'wanda', whose
        members (pre-/post-normalisation activations, several consumers) differ in scale by orders of magnitude.
    normalizer: applied to the reduced vector: 'mean' (default, as Torch-Pruning), 'max', 'sum', None; 'lamp'
        for criterion 'lamp' whatever is set here.
    seed: for 'random'. batch_size, samples, chunk_size: calibration (see onnxprune.calibration).
    """

    criterion: str = "l2"
    reduction: str = "mean"
    member_normalizer: str | None = "auto"
    normalizer: str | None = "mean"
    seed: int = 0
    batch_size: int = 16
    samples: int = 8
    chunk_size: int = 16

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise ValueError(f"unknown criterion {self.criterion!r}; choose from {', '.join(CRITERIA)}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {self.reduction!r}; choose from {', '.join(REDUCTIONS)}")
        if self.member_normalizer not in ("auto", *NORMALIZERS[:-1]):
            raise ValueError(f"unknown member normalizer {self.member_normalizer!r}")
        if self.normalizer not in NORMALIZERS:
            raise ValueError(f"unknown normalizer {self.normalizer!r}")


class Scores(dict):
    """{group id: importance per unit (float64, length group.size)}; ``notes`` says where a criterion fell back."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.notes: dict[int, str] = {}


def normalize(vector: np.ndarray, how: str | None) -> np.ndarray:
    """Divide by the vector's mean/max/sum (left alone when that is 0), or LAMP-normalise, or return it as is."""
    if how is None or len(vector) == 0:
        return vector
    if how == "lamp":
        order = np.argsort(vector, kind="stable")
        ranked = vector[order]
        tail = np.cumsum(ranked[::-1])[::-1]  # sum of the scores at or above each rank
        out = np.empty_like(vector)
        out[order] = np.divide(ranked, tail, out=np.zeros_like(ranked), where=tail > 0)
        return out
    base = {"mean": np.mean, "max": np.max, "sum": np.sum}[how](vector)
    return vector / base if base > 0 else vector


def reduce_members(vectors: list[np.ndarray], how: str) -> np.ndarray:
    """Combine per-member unit scores into one vector (mean, sum, max or prod)."""
    stack = np.stack(vectors)
    return {"mean": np.mean, "sum": np.sum, "max": np.max, "prod": np.prod}[how](stack, axis=0)


def score_groups(dg, options: ImportanceOptions | None = None, groups=None,
                 stats: dict[ChannelAxis, object] | None = None, roles: dict[str, str] | None = None) -> Scores:
    """Importance of every unit of ``groups`` (default: every prunable group) under ``options``.

    Data-driven criteria need ``stats`` from ``onnxprune.calibration.channel_statistics`` over
    ``needed_axes(dg, groups, criterion)``; ``compute_importance`` does that for you. ``roles`` overrides
    ``parameter_roles(dg)`` (which constants count as weights and scales).
    """
    options = options or ImportanceOptions()
    groups = dg.prunable_groups() if groups is None else groups
    if options.criterion in DATA_CRITERIA and stats is None:
        raise ValueError(f"criterion {options.criterion!r} needs calibration statistics (use compute_importance)")
    roles = parameter_roles(dg) if roles is None else roles
    member_norm = options.member_normalizer
    if member_norm == "auto":
        member_norm = "mean" if options.criterion in DATA_CRITERIA else None
    final_norm = "lamp" if options.criterion == "lamp" else options.normalizer
    scores = Scores()
    for group in groups:
        view = GroupView(dg, group, roles, stats or {}, options.seed)
        vectors, note = CRITERIA[options.criterion](view)
        if note:
            scores.notes[group.id] = note
        if not vectors:
            scores[group.id] = np.zeros(group.size)
            scores.notes[group.id] = (note + "; " if note else "") + "no member to score: every unit scores 0"
            continue
        vectors = [normalize(np.asarray(v, dtype=np.float64), member_norm) for v in vectors]
        scores[group.id] = normalize(reduce_members(vectors, options.reduction), final_norm)
    return scores


def compute_importance(dg, options: ImportanceOptions | None = None, calib=None, groups=None,
                       roles: dict[str, str] | None = None) -> Scores:
    """Score groups, collecting calibration statistics first when the criterion is data-driven.

    ``calib``: a dict of arrays named like the model inputs, a path to an .npz of them, a list of such feed dicts
    (batches), or None for random inputs (with a warning that real data is better). ``roles``: see score_groups.
    """
    options = options or ImportanceOptions()
    groups = dg.prunable_groups() if groups is None else groups
    stats = None
    if options.criterion in DATA_CRITERIA:
        model = export_graph(dg.graph, dg.loaded)
        batches = calib if isinstance(calib, list) else calibration_batches(
            model, calib, batch_size=options.batch_size, samples=options.samples, seed=options.seed)
        stats = channel_statistics(dg, needed_axes(dg, groups, options.criterion), batches,
                                   chunk_size=options.chunk_size, model=model)
    return score_groups(dg, options, groups, stats, roles)
