"""The importance criteria: each turns one group into a list of per-member unit-score vectors (and a note when it
had to fall back). See ``onnxprune.scoring.importance`` for how the vectors are normalised and reduced.

- ``l2`` / ``l1`` / ``lamp``: sum |v|^p over each weight or scale member's unit slice (p = 2, 1, 2).
- ``bn``: |gamma| of the group's normalisation scales; groups without one fall back to ``l2`` (noted).
- ``random``: uniform scores from a generator seeded by (seed, group id).
- ``fpgm``: for each weight member, the summed Euclidean distance of a unit's slice to every other unit's slice
  (units near the geometric median are redundant and score low).
- ``activation``: mean |x| over each float activation member's unit slice (calibration statistics).
- ``wanda``: for each weight member on a consumer (input) axis, sum over the unit's input indices j of
  (sum over every other axis of |W|)[j] * ||X_j||, X being the node's activation input on the same group
  (Wanda / FLAP's |W|·||X||). Criteria without a member to read fall back to ``l2`` (noted).
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.axes import ChannelAxis
from onnxprune.handlers import handler_for
from onnxprune.ir.reading import release_pages

DATA_CRITERIA = ("activation", "wanda")
_CHUNK_ELEMENTS = 1 << 22  # weights of over 4 such slices are scored slice by slice (bounded float64 temporaries)


def parameter_roles(dg) -> dict[str, str]:
    """{constant name: 'weight' | 'scale'} for every float constant a magnitude criterion counts (see module doc)."""
    roles: dict[str, str] = {}
    for axis in dg.record.producers:
        if isinstance(dg.tensors.get(axis.tensor), gs.Constant):
            roles[axis.tensor] = "weight"
    for node in dg.graph.nodes:
        handler = handler_for(node)
        if handler is None:
            continue
        for role, indices in (("scale", handler.scale_inputs(node)), ("weight", handler.weight_inputs(node))):
            for i in indices:
                if i < len(node.inputs) and isinstance(node.inputs[i], gs.Constant):
                    roles.setdefault(node.inputs[i].name, role)
    return roles


class GroupView:
    """One group seen by a criterion: member roles, calibration statistics and slice helpers."""

    def __init__(self, dg, group, roles: dict[str, str], stats: dict, seed: int = 0):
        self.dg = dg
        self.group = group
        self.roles = roles
        self.stats = stats
        self.seed = seed
        self.k_root = group.members[group.root].shape[1]
        self.producers = set(dg.record.producers)

    def values(self, axis: ChannelAxis) -> np.ndarray:
        """The constant member's values as float64."""
        return np.asarray(self.dg.tensors[axis.tensor].values, dtype=np.float64)

    def per_index(self, axis: ChannelAxis, p: float) -> np.ndarray:
        """sum |v|^p over every axis but ``axis.axis``: one score per index of the member's axis. Big weights are
        read in slices along their first axis, so no float64 copy of a whole weight is made."""
        tensor = self.dg.tensors[axis.tensor]
        if tensor.values.size > 4 * _CHUNK_ELEMENTS and tensor.values.ndim > 1:
            return self._per_index_chunked(np.asarray(tensor.values), axis.axis, p)
        values = np.abs(self.values(axis))
        release_pages(tensor.values)  # read once: a memory-mapped weight need not stay resident
        if p != 1:
            values = values ** p
        return values.sum(axis=tuple(k for k in range(values.ndim) if k != axis.axis))

    @staticmethod
    def _per_index_chunked(values: np.ndarray, axis: int, p: float) -> np.ndarray:
        rows = max(1, _CHUNK_ELEMENTS // max(1, values[0].size))
        parts, total = [], 0.0
        for start in range(0, len(values), rows):
            chunk = np.array(values[start:start + rows], dtype=np.float64)
            np.abs(chunk, out=chunk)
            if p != 1:
                chunk **= p
            sums = chunk.sum(axis=tuple(k for k in range(chunk.ndim) if k != axis))
            if axis == 0:
                parts.append(sums)
            else:
                total = total + sums
        release_pages(values)  # a memory-mapped weight need not stay resident once scored
        return np.concatenate(parts) if axis == 0 else total

    def unit_sum(self, axis: ChannelAxis, per_index: np.ndarray) -> np.ndarray:
        """Per-unit sum over the member's slice, counted once per root copy (see onnxprune.scoring.importance)."""
        table = self.group.members[axis]
        return per_index[table].sum(axis=1) / min(table.shape[1], self.k_root)

    def with_role(self, *roles: str) -> list[ChannelAxis]:
        """Constant members whose tensor has one of ``roles``."""
        return [ax for ax in self.group.constants() if self.roles.get(ax.tensor) in roles]

    def counted(self) -> list[ChannelAxis]:
        """Weights and scales; every float constant member when the group has neither."""
        found = self.with_role("weight", "scale")
        if found:
            return found
        return [ax for ax in self.group.constants()
                if np.issubdtype(np.dtype(self.dg.tensors[ax.tensor].dtype), np.floating)]

    def activations(self) -> list[ChannelAxis]:
        """Float activation members."""
        out = []
        for ax in self.group.members:
            tensor = self.dg.tensors.get(ax.tensor)
            if isinstance(tensor, gs.Variable) and tensor.dtype is not None \
                    and np.issubdtype(np.dtype(tensor.dtype), np.floating):
                out.append(ax)
        return out

    def consumer_pairs(self) -> list[tuple[ChannelAxis, ChannelAxis]]:
        """(weight member on an input axis, activation member the same node reads) pairs, for Wanda."""
        pairs = []
        for w_axis in self.with_role("weight"):
            if w_axis in self.producers:
                continue
            for node in self.dg.tensors[w_axis.tensor].outputs:
                x_axis = next((ChannelAxis(t.name, a) for t in node.inputs if isinstance(t, gs.Variable)
                               for a in range(len(t.shape or [])) if ChannelAxis(t.name, a) in self.group.members),
                              None)
                if x_axis is not None:
                    pairs.append((w_axis, x_axis))
                    break
        return pairs


def _magnitude(p: float):
    def criterion(view: GroupView):
        """sum |v|^p over each weight or scale member's unit slice."""
        return [view.unit_sum(ax, view.per_index(ax, p)) for ax in view.counted()], ""
    return criterion


def _fallback(view: GroupView, why: str):
    vectors, _ = _magnitude(2)(view)
    return vectors, f"{why}: fell back to l2"


def bn_scale(view: GroupView):
    """|gamma| of normalisation scales (Network Slimming; Torch-Pruning's BNScaleImportance, p=1)."""
    scales = view.with_role("scale")
    if not scales:
        return _fallback(view, "no normalisation scale in the group")
    return [view.unit_sum(ax, view.per_index(ax, 1)) for ax in scales], ""


def random_scores(view: GroupView):
    """Uniform scores, the same for the same seed and group."""
    rng = np.random.default_rng([view.seed, view.group.id])
    return [rng.random(view.group.size)], ""


def fpgm(view: GroupView):
    """Sum of Euclidean distances from each unit's weight slice to the others' (FPGM)."""
    weights = view.with_role("weight")
    if not weights:
        return _fallback(view, "no weight in the group")
    vectors = []
    for ax in weights:
        rows = np.moveaxis(view.values(ax), ax.axis, 0)[view.group.members[ax]].reshape(view.group.size, -1)
        sq = np.einsum("ij,ij->i", rows, rows)
        dist2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * rows @ rows.T, 0.0)
        vectors.append(np.sqrt(dist2).sum(axis=1))
    return vectors, ""


def activation(view: GroupView):
    """Mean |activation| over each float activation member's unit slice."""
    members = [ax for ax in view.activations() if ax in view.stats]
    if not members:
        return _fallback(view, "no activation statistics for the group")
    return [view.stats[ax].mean_abs[view.group.members[ax]].mean(axis=1) for ax in members], ""


def wanda(view: GroupView):
    """sum_j (sum over other axes of |W|)[j] * ||X_j|| over each consumer weight's unit slice (Wanda / FLAP)."""
    vectors = []
    for w_axis, x_axis in view.consumer_pairs():
        if x_axis not in view.stats:
            continue
        w_score = view.per_index(w_axis, 1)[view.group.members[w_axis]]
        x_norm = view.stats[x_axis].norm[view.group.members[x_axis]]
        if w_score.shape == x_norm.shape:
            total = (w_score * x_norm).sum(axis=1)
        else:  # slices of different lengths (grouped conv kernels): weight sum times mean input norm
            total = w_score.sum(axis=1) * x_norm.mean(axis=1)
        vectors.append(total / min(w_score.shape[1], view.k_root))
    if not vectors:
        return _fallback(view, "no consumer weight with calibrated input in the group")
    return vectors, ""


CRITERIA = {"l2": _magnitude(2), "l1": _magnitude(1), "bn": bn_scale, "random": random_scores, "fpgm": fpgm,
            "lamp": _magnitude(2), "activation": activation, "wanda": wanda}


def needed_axes(dg, groups, criterion: str) -> list[ChannelAxis]:
    """Activation axes whose calibration statistics ``criterion`` reads for ``groups``."""
    if criterion not in DATA_CRITERIA:
        return []
    roles = parameter_roles(dg)
    axes: dict[ChannelAxis, None] = {}
    for group in groups:
        view = GroupView(dg, group, roles, {})
        found = view.activations() if criterion == "activation" else [x for _, x in view.consumer_pairs()]
        axes.update(dict.fromkeys(found))
    return list(axes)
