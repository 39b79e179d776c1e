"""Groups: the sets of (tensor axis, indices) that must be pruned together, and the DependencyGraph holding them.

Coupling is between indices, so the connected components of (axis, index) pairs are the units of pruning. The
components that touch the same axes the same number of times are parallel copies of one structure (the channels
of one conv and everything they feed), and together they form one Group; its index k is the k-th such unit,
ordered by the group's root axis (preferably the weight axis that produces the channels).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.analysis.components import connected_components
from onnxprune.axes import ChannelAxis
from onnxprune.errors import PruneError
from onnxprune.handlers.record import AnalysisRecord
from onnxprune.ir.loading import LoadedModel
from onnxprune.ir.untie import TieDecision


class Group:
    """One prunable unit family: ``members[axis]`` is a (size, k) array, row i = indices of ``axis`` in unit i."""

    def __init__(self, gid: int, root: ChannelAxis, members: dict[ChannelAxis, np.ndarray], kind: str,
                 blocked: list[str], inexact: list[str], depgraph: DependencyGraph, labels: frozenset = frozenset(),
                 blocks: np.ndarray | None = None):
        self.id = gid
        self.root = root
        self.members = members
        self.kind = kind
        self.blocked_reasons = blocked
        self.inexact_reasons = inexact
        self.depgraph = depgraph
        self.labels = labels  # what handlers named its axes: 'heads', 'head_dim', 'normalized' (see label())
        self.blocks = blocks  # block of each unit where a member declared equal blocks (see equal_blocks()), or None

    @property
    def size(self) -> int:
        """Number of units (channels) in the group."""
        return len(next(iter(self.members.values())))

    @property
    def multiple(self) -> int:
        """Unit count multiple that keeps every member at the size its handler prefers for speed (1 if none)."""
        result = 1
        for axis, table in self.members.items():
            wanted = self.depgraph.record.multiples.get(axis, 1)
            result = math.lcm(result, wanted // math.gcd(wanted, table.shape[1]))
        return result

    def check_blocks(self, units: np.ndarray) -> str | None:
        """Why removing ``units`` breaks the group's equal blocks (a different count per block, or a whole block),
        or None when it does not (or the group has no blocks)."""
        if self.blocks is None or not len(units):
            return None
        sizes = np.bincount(self.blocks)
        counts = np.bincount(self.blocks[units], minlength=len(sizes))
        if np.all(counts == counts[0]) and counts[0] < sizes[0]:
            return None
        return (f"its units form {len(sizes)} blocks of {sizes[0]} (query heads per KV group) and a pruning must "
                f"remove the same count from every block, keeping at least one; got {counts.tolist()} per block")

    @property
    def prunable(self) -> bool:
        """Whether the group is a channel group with no blocking reason."""
        return self.kind == "channel" and not self.blocked_reasons

    @property
    def exact(self) -> bool:
        """Whether pruning this group gives exactly the original model with its channels zeroed (mask oracle)."""
        return not self.inexact_reasons

    def constants(self) -> list[ChannelAxis]:
        """Member axes that belong to constants (weights, biases, norm statistics)."""
        tensors = self.depgraph.tensors
        return [ax for ax in self.members if isinstance(tensors.get(ax.tensor), gs.Constant)]

    def indices(self, axis: ChannelAxis, units: Iterable[int]) -> np.ndarray:
        """Indices of ``axis`` that the given units of this group cover."""
        return np.unique(self.members[axis][np.asarray(list(units), dtype=np.int64)])

    def details(self) -> str:
        """A readable printout: one line per member axis (tensor, axis, op, how units map to indices)."""
        state = "prunable" if self.prunable else ("blocked" if self.kind == "channel" else "non-channel")
        lines = [f"Group {self.id}: root {self.root}, {self.size} {self.unit_name()}, {state}"
                 + ("" if self.exact else " (not mask-exact)")
                 + ("" if self.blocks is None else f", {int(self.blocks.max()) + 1} equal blocks (same count removed "
                                                   "from each)")]
        for axis, table in self.members.items():
            tensor = self.depgraph.tensors.get(axis.tensor)
            kind = "const" if isinstance(tensor, gs.Constant) else "act"
            users = sorted({f"{n.op}:{n.name}" for n in (tensor.outputs if tensor is not None else [])})
            made_by = tensor.inputs[0] if tensor is not None and tensor.inputs else None
            ops = ([f"{made_by.op}:{made_by.name}"] if made_by is not None else []) + users
            lines.append(f"  {axis.tensor!s:<48} axis {axis.axis} {kind:<5} {_describe(table):<24} "
                         f"{', '.join(ops[:3])}{' ...' if len(ops) > 3 else ''}")
        for decision in self.ties():
            lines.append(f"  {decision.describe()}")
        for reason in self.blocked_reasons[:5]:
            lines.append(f"  blocked: {reason}")
        for reason in self.inexact_reasons[:3]:
            lines.append(f"  not exact: {reason}")
        return "\n".join(lines)

    def ties(self) -> list[TieDecision]:
        """Decisions about constants of this group that several nodes read (untied copies, or ties kept)."""
        names = {ax.tensor for ax in self.members}
        return [d for d in self.depgraph.ties if d.tensors() & names]

    def unit_name(self) -> str:
        """What one unit of the group is, for printouts: 'heads', 'head_dim positions' or 'channels'."""
        if "heads" in self.labels:
            return "heads"
        return "head_dim positions" if "head_dim" in self.labels else "channels"

    def to_dict(self) -> dict:
        """JSON-ready description of the group."""
        return {"id": self.id, "root": {"tensor": self.root.tensor, "axis": self.root.axis}, "size": self.size,
                "labels": sorted(self.labels), "blocks": None if self.blocks is None else int(self.blocks.max()) + 1,
                "prunable": self.prunable, "exact": self.exact, "blocked": self.blocked_reasons,
                "not_exact": self.inexact_reasons, "ties": [d.to_dict() for d in self.ties()],
                "members": [{"tensor": ax.tensor, "axis": ax.axis, "indices_per_channel": int(t.shape[1]),
                             "map": _describe(t)} for ax, t in self.members.items()]}

    def __repr__(self) -> str:
        return f"Group({self.id}, root={self.root}, size={self.size}, prunable={self.prunable})"


def _is_float_constant(tensor) -> bool:
    return isinstance(tensor, gs.Constant) and np.issubdtype(np.dtype(tensor.dtype), np.floating)


def _unit_blocks(members: dict[ChannelAxis, np.ndarray], record: AnalysisRecord) -> np.ndarray | None:
    """Block id of each unit (0, 1, ...) from the members declared as equal consecutive blocks (a unit's block is
    where its first index falls; several declarations combine), or None when no member declared blocks."""
    keys = []
    for axis, table in members.items():
        if axis in record.equal_blocks:
            keys.append(table[:, 0] // (record.static_size(axis) // record.equal_blocks[axis]))
    if not keys:
        return None
    _, blocks = np.unique(np.stack(keys, axis=1), axis=0, return_inverse=True)
    return blocks.reshape(-1).astype(np.int64)


def _describe(table: np.ndarray) -> str:
    """How unit i maps to indices, in a few characters: 'i', 'i+32', '[i, i+8, ...]', 'i*4..i*4+3'."""
    n, k = table.shape
    units = np.arange(n)
    if k == 1:
        diff = table[:, 0] - units
        if np.all(diff == diff[0]):
            return "i" if diff[0] == 0 else f"i+{diff[0]}"
        return f"permuted ({table[0, 0]}, {table[1, 0] if n > 1 else ''}, ...)"
    if np.all(np.diff(table, axis=1) == 1) and np.all(table[:, 0] == units * k):
        return f"i*{k}..i*{k}+{k - 1}"
    stride = table[0, 1] - table[0, 0]
    if np.all(table == table[:, :1] + stride * np.arange(k)):
        return f"i, i+{stride}, ... ({k} each)"
    return f"{k} indices each"


def _by_signature(axis_of: np.ndarray, starts: np.ndarray, ends: np.ndarray, n_axes: int) -> list[list[int]]:
    """Components (slices ``starts[c]:ends[c]`` of ``axis_of``, sorted by axis) grouped by their axis sequence, in
    order of first appearance. Vectorised: components are bucketed by two random hashes of their axis multiset and
    length, and each bucket is checked element by element (so a hash collision can never merge two groups)."""
    rng = np.random.default_rng(0)
    lengths = ends - starts
    keys = [lengths]
    for _ in range(2):
        weights = rng.integers(1, 2**63 - 1, size=n_axes, dtype=np.int64).astype(np.uint64)
        keys.append(np.add.reduceat(weights[axis_of], starts))
    _, first, inverse = np.unique(np.stack(keys, axis=1), axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(first, kind="stable")  # buckets in order of their first component
    members = np.argsort(inverse, kind="stable")
    cuts = np.cumsum(np.bincount(inverse, minlength=len(first)))[:-1]
    buckets = np.split(members, cuts)
    result: list[list[int]] = []
    for b in order:
        comps = buckets[b]
        length = int(lengths[comps[0]])
        rows = axis_of[starts[comps][:, None] + np.arange(length)]
        same = np.all(rows == rows[0], axis=1)
        if same.all():
            result.append(comps.tolist())
            continue
        split: dict[bytes, list[int]] = {}  # a collision: fall back to exact keys for this bucket
        for c, row in zip(comps, rows):
            split.setdefault(row.tobytes(), []).append(int(c))
        result += list(split.values())
    return result


class DependencyGraph:
    """The analysed model: its graph, handler records, and every Group found."""

    def __init__(self, graph: gs.Graph, opset: int, record: AnalysisRecord, nonchannel: set[ChannelAxis]):
        self.graph = graph
        self.opset = opset
        self.record = record
        self.tensors = record.tensors
        self.nonchannel = nonchannel
        self.seconds = 0.0
        self.groups: list[Group] = self._build_groups()
        self.loaded: LoadedModel | None = None  # set by analyse_model: what is needed to write the model back
        self.ties: list[TieDecision] = []  # set by analyse_model: shared constants untied or kept (ir.untie)

    # -- building ----------------------------------------------------------------------------------------------
    def _build_groups(self) -> list[Group]:
        record = self.record
        order: dict[ChannelAxis, int] = {}
        for a, b, *_ in record.edges:
            order.setdefault(a, len(order))
            order.setdefault(b, len(order))
        axes = list(order)
        if not axes:
            return []
        sizes = np.array([record.static_size(ax) for ax in axes], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        ga = np.concatenate([offsets[order[a]] + ia for a, _, ia, _, _ in record.edges])
        gb = np.concatenate([offsets[order[b]] + ib for _, b, _, ib, _ in record.edges])
        labels = connected_components(int(sizes.sum()), ga, gb)
        axis_of = np.repeat(np.arange(len(axes)), sizes)
        index_of = np.arange(int(sizes.sum())) - np.repeat(offsets, sizes)
        perm = np.lexsort((index_of, axis_of, labels))
        labels, axis_of, index_of = labels[perm], axis_of[perm], index_of[perm]
        cuts = np.flatnonzero(np.diff(labels)) + 1
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts, [len(labels)]])
        by_signature = _by_signature(axis_of, starts, ends, len(axes))
        producers = {ax: k for k, ax in enumerate(record.producers)}
        self._producers = producers
        groups = []
        for comps in by_signature:
            s0, e0 = starts[comps[0]], ends[comps[0]]
            cols = axis_of[s0:e0]
            rows = np.stack([index_of[starts[c]:ends[c]] for c in comps])
            member_axes = [axes[i] for i in dict.fromkeys(cols.tolist())]
            members = {ax: rows[:, cols == order[ax]] for ax in member_axes}
            root = self._choose_root(member_axes, producers)
            ranking = np.lexsort(members[root][:, ::-1].T)
            members = {ax: t[ranking] for ax, t in members.items()}
            groups.append(self._make_group(root, members))
        groups.sort(key=lambda g: (order[g.root], g.root.axis))
        visible = [g for g in groups if g.kind == "channel"] + [g for g in groups if g.kind != "channel"]
        for gid, group in enumerate(visible):
            group.id = gid
        return visible

    def _choose_root(self, member_axes: list[ChannelAxis], producers: dict[ChannelAxis, int]) -> ChannelAxis:
        made = [ax for ax in member_axes if ax in producers]
        if made:
            return min(made, key=producers.get)
        consts = [ax for ax in member_axes if isinstance(self.tensors.get(ax.tensor), gs.Constant)]
        return consts[0] if consts else member_axes[0]

    def _make_group(self, root: ChannelAxis, members: dict[ChannelAxis, np.ndarray]) -> Group:
        record = self.record
        kind = "nonchannel" if any(ax in self.nonchannel for ax in members) else "channel"
        if kind == "channel" and not any(ax in self._producers or _is_float_constant(self.tensors.get(ax.tensor))
                                         for ax in members):
            kind = "weightless"  # activations and shape constants only: nothing to prune
        blocked: list[str] = []
        for ax, table in members.items():
            blocked += [r for r in record.blocks.get(ax, []) if r not in blocked]
            size = record.static_size(ax)
            if table.shape[1] == size:
                blocked.append(f"removing any channel would empty tensor '{ax.tensor}' axis {ax.axis}")
        inexact = [f"{ax}: {record.inexact[ax]}" for ax in members if ax in record.inexact]
        labels = frozenset(tag for ax in members for tag in record.labels.get(ax, ()))
        blocks = _unit_blocks(members, record)
        if blocks is not None and len(set(np.bincount(blocks).tolist())) > 1:
            blocked.append(f"its units fall into blocks of different sizes {np.bincount(blocks).tolist()}, which "
                           "must lose the same count each")
        return Group(-1, root, members, kind, blocked, inexact, self, labels, blocks)

    # -- queries -----------------------------------------------------------------------------------------------
    def channel_groups(self) -> list[Group]:
        """Groups of channel axes (prunable or blocked); batch/spatial/sequence and weightless ones are left out."""
        return [g for g in self.groups if g.kind == "channel"]

    def prunable_groups(self) -> list[Group]:
        """Channel groups with no blocking reason."""
        return [g for g in self.groups if g.prunable]

    def group(self, gid: int) -> Group:
        """The group with id ``gid``."""
        return self.groups[gid]

    def group_of(self, tensor: str, axis: int) -> list[Group]:
        """Every channel group that has ``tensor``'s ``axis`` as a member."""
        key = ChannelAxis(tensor, axis)
        return [g for g in self.channel_groups() if key in g.members]

    def resolve(self, plan: dict[int, Iterable[int]]) -> dict[ChannelAxis, np.ndarray]:
        """Turn {group id: units} into {axis: sorted removed indices}; raises PruneError on an invalid plan."""
        removed: dict[ChannelAxis, list[np.ndarray]] = {}
        for gid, units in plan.items():
            if not 0 <= int(gid) < len(self.groups):
                raise PruneError(f"no group {gid} (the model has {len(self.groups)})")
            group = self.groups[int(gid)]
            units = np.unique(np.asarray(list(units), dtype=np.int64))
            if len(units) == 0:
                continue
            if not group.prunable:
                why = "; ".join(group.blocked_reasons[:2]) or f"it is a {group.kind} group"
                raise PruneError(f"group {gid} (root {group.root}) cannot be pruned: {why}")
            if units.min() < 0 or units.max() >= group.size:
                raise PruneError(f"group {gid} has {group.size} channels; got index {int(units.max())}")
            broken = group.check_blocks(units)
            if broken:
                raise PruneError(f"group {gid} (root {group.root}) cannot lose units {units.tolist()}: {broken}")
            for axis, table in group.members.items():
                if axis.tensor in self.tensors:  # not a packed axis (a factor riding in a dynamic dim)
                    removed.setdefault(axis, []).append(table[units].ravel())
        result = {}
        for axis, parts in removed.items():
            idx = np.unique(np.concatenate(parts))
            size = self.record.static_size(axis)
            if len(idx) >= size:
                raise PruneError(f"the plan removes all {size} indices of tensor '{axis.tensor}' axis {axis.axis}")
            result[axis] = idx
        return result

    def sizes(self) -> dict[ChannelAxis, int]:
        """Static size of every axis in the dependency graph."""
        return {ax: self.record.static_size(ax) for a, b, *_ in self.record.edges for ax in (a, b)}

    def summary(self) -> dict:
        """Counts of groups by state."""
        channel = self.channel_groups()
        return {"groups": len(channel), "prunable": sum(g.prunable for g in channel),
                "blocked": sum(not g.prunable for g in channel), "seconds": round(self.seconds, 4)}
