"""Selection: turn importance scores into {group id: units to remove}.

Local (default): every group loses ``size - int(size * (1 - ratio))`` units, its lowest-scored ones, the rounding
Torch-Pruning's MetaPruner uses. Global: all candidate units are ranked together (scores are normalised per group,
so they are comparable) and the lowest ``total - int(total * (1 - ratio))`` go. Then per group: at most
``max_ratio`` of its units, never all of them, and with ``round_to`` the kept count is rounded to the nearest
multiple of N (halves up), never below N; a group smaller than N is left whole. (Torch-Pruning's ``round_to``
rounds the kept count down, which at ratio 0.3 can remove 60% of a 20-channel layer; we round to the nearest, as
its docstring says.) A group whose units form equal blocks (``Group.blocks``: the query heads of each KV group of a
grouped-query attention) loses the same count from every block, its lowest-scored units of each, and keeps at least
one per block: with a ratio the count per block is the local count of one block; with global ranking, the group's
share divided by the number of blocks (rounded to the nearest); ``round_to`` does not apply to it. Ties break by unit
index, so the same scores and options always give the same plan.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from onnxprune.axes import ChannelAxis


@dataclass
class SelectionOptions:
    """How many units to remove, and from which groups.

    ratio: fraction of units removed per group (local) or over all groups (global_ranking).
    max_ratio: cap on the fraction any one group loses. round_to: keep counts at multiples of N.
    ignore: glob patterns over node, initializer and tensor names; a group with a matching member tensor, or a
        member tensor made or read by a matching node, is left whole.
    target_macs / target_params: fraction of MACs / parameters that should remain; the ratio is then searched
        (bisection over ``search_steps`` steps, measuring the pruned graph) instead of taken from ``ratio``.
    seed: passed to seeded criteria (random).
    speed_multiples: also round each group's kept count to the multiple its handlers prefer for fast kernels
        (depthwise and grouped convs), where the group has at least twice that many units.
    heads_ratio: fraction of attention heads removed from every head group (groups labelled 'heads', which an
        analysis with factor_policy 'leading' finds), instead of ``ratio``, locally and without ``round_to``;
        None: head groups are treated like the others.
    query_heads_ratio: fraction of the query heads removed inside each KV group from groups labelled 'query_heads'
        (an analysis with attention_units 'query_heads' finds them), instead of ``heads_ratio`` or ``ratio``.
    no_hidden: leave hidden-size groups whole (see ``is_hidden``: a transformer's residual width).
    group_ratios: {group id: ratio} for groups that get their own ratio (locally, as ``ratio`` would be applied;
        ``max_ratio``, ``round_to`` and ignores still hold); they stay out of the global ranking. Sensitivity
        allocation (``onnxprune.search.allocation``) fills it; groups not listed get ``ratio``.
    """

    ratio: float = 0.5
    global_ranking: bool = False
    max_ratio: float = 1.0
    round_to: int | None = None
    ignore: tuple[str, ...] = ()
    target_macs: float | None = None
    target_params: float | None = None
    search_steps: int = 8
    seed: int = 0
    speed_multiples: bool = True
    heads_ratio: float | None = None
    query_heads_ratio: float | None = None
    no_hidden: bool = False
    group_ratios: dict[int, float] | None = None

    def __post_init__(self) -> None:
        self.ignore = tuple(self.ignore)
        for gid, value in (self.group_ratios or {}).items():
            if not 0.0 <= value < 1.0:
                raise ValueError(f"group {gid}: ratio must be in [0, 1), got {value}")
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {self.ratio}")
        for name in ("heads_ratio", "query_heads_ratio"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if not 0.0 <= self.max_ratio <= 1.0:
            raise ValueError(f"max_ratio must be in [0, 1], got {self.max_ratio}")
        if self.round_to is not None and self.round_to < 1:
            raise ValueError(f"round_to must be >= 1, got {self.round_to}")
        for name in ("target_macs", "target_params"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ValueError(f"{name} is the fraction that remains, in (0, 1]; got {value}")


def units_to_remove(size: int, ratio: float, max_ratio: float = 1.0, round_to: int | None = None,
                    wanted: int | None = None) -> int:
    """How many of a group's ``size`` units go: ``wanted`` (default: Torch-Pruning's local count for ``ratio``),
    capped by ``max_ratio`` and ``size - 1``, then with the kept count rounded to a multiple of ``round_to``."""
    n = size - int(size * (1 - ratio)) if wanted is None else wanted
    cap = min(size - 1, int(math.floor(size * max_ratio + 1e-9)))
    n = max(0, min(n, cap))
    if not round_to or round_to == 1 or n == 0:
        return n
    if size < round_to:
        return 0
    kept = min(max((size - n + round_to // 2) // round_to * round_to, round_to), size)
    if size - kept > cap:
        kept = math.ceil((size - cap) / round_to) * round_to
    return max(0, size - kept)


def ignored_groups(dg, patterns: Iterable[str], groups=None) -> set[int]:
    """Ids of the groups that a pattern protects (see SelectionOptions.ignore)."""
    patterns = list(patterns)
    if not patterns:
        return set()
    found = set()
    for group in dg.channel_groups() if groups is None else groups:
        names = set()
        for axis in group.members:
            names.add(axis.tensor)
            tensor = dg.tensors.get(axis.tensor)
            if tensor is not None:
                names.update(n.name for n in list(tensor.inputs) + list(tensor.outputs) if n.name)
        if any(fnmatch.fnmatchcase(name, p) for name in names for p in patterns):
            found.add(group.id)
    return found


def is_heads(group) -> bool:
    """Whether one unit of ``group`` is one attention head (Q, K, V rows and output-projection columns of it):
    a handler labelled a member axis 'heads' (the per-head batch axis of the attention products)."""
    return "heads" in group.labels


def is_query_heads(group) -> bool:
    """Whether one unit of ``group`` is one query head inside the KV groups of a grouped-query attention (label
    'query_heads', from an analysis with attention_units 'query_heads')."""
    return "query_heads" in group.labels


def is_hidden(group) -> bool:
    """Whether ``group`` is a hidden-size group: a member axis is normalised over by a LayerNormalization or
    RMSNormalization, or averaged over by the ReduceMean of a decomposed LayerNorm/RMSNorm (label 'normalized').
    In a transformer that is the residual width, which every block reads and writes; such groups are never
    mask-exact."""
    return "normalized" in group.labels


def _lowest(scores: np.ndarray, n: int) -> list[int]:
    return sorted(np.argsort(scores, kind="stable")[:n].tolist())


def lowest_per_block(scores: np.ndarray, blocks: np.ndarray, per_block: int) -> list[int]:
    """The ``per_block`` lowest-scored units of every block (``blocks[u]``: the block of unit u), sorted."""
    chosen = []
    for block in np.unique(blocks):
        units = np.flatnonzero(blocks == block)
        chosen += units[np.argsort(np.asarray(scores)[units], kind="stable")[:per_block]].tolist()
    return sorted(chosen)


def _per_block(group, ratio: float, max_ratio: float, wanted: int | None) -> int:
    """How many units each block of ``group`` loses: a block's local count for ``ratio`` (or the group's global
    share ``wanted`` spread over its blocks), capped by ``max_ratio`` and leaving one unit per block."""
    count = int(group.blocks.max()) + 1
    size = group.size // count
    return units_to_remove(size, ratio, max_ratio, None, None if wanted is None else round(wanted / count))


def select(dg, scores: dict[int, np.ndarray], options: SelectionOptions | None = None) -> dict[int, list[int]]:
    """The plan {group id: sorted units to remove} for the scored groups (blocked and ignored ones are skipped)."""
    options = options or SelectionOptions()
    skip = ignored_groups(dg, options.ignore, [dg.group(g) for g in scores])
    if options.no_hidden:
        skip |= {g for g in scores if is_hidden(dg.group(g))}
    candidates = [g for g in scores if g not in skip and dg.group(g).prunable and dg.group(g).size > 1]
    own = options.group_ratios or {}
    query_heads = {g for g in candidates if options.query_heads_ratio is not None and is_query_heads(dg.group(g))}
    head_units = {g for g in candidates if options.heads_ratio is not None and is_heads(dg.group(g))} | query_heads
    heads = head_units - set(own)  # head groups at heads_ratio (query heads at query_heads_ratio)
    wanted: dict[int, int | None] = dict.fromkeys(candidates)
    ranked = [g for g in candidates if g not in heads and g not in own]  # these keep their own (local) ratio
    if options.global_ranking and ranked:
        total = sum(dg.group(g).size for g in ranked)
        n_total = total - int(total * (1 - options.ratio))
        flat = np.concatenate([np.asarray(scores[g], dtype=np.float64) for g in ranked])
        owner = np.concatenate([np.full(dg.group(g).size, k) for k, g in enumerate(ranked)])
        chosen = owner[np.argsort(flat, kind="stable")[:n_total]]
        counts = np.bincount(chosen, minlength=len(ranked))
        wanted.update({g: int(counts[k]) for k, g in enumerate(ranked)})
    plan = {}
    for gid in candidates:
        group = dg.group(gid)
        size, round_to = group.size, options.round_to or 1
        if options.speed_multiples and group.multiple > 1 and size >= 2 * group.multiple:
            round_to = math.lcm(round_to, group.multiple)
        ratio = own.get(gid, options.query_heads_ratio if gid in query_heads else
                        options.heads_ratio if gid in heads else options.ratio)
        if gid in head_units:  # a unit is a whole head: round_to counts channels, not heads
            round_to = 1
        if group.blocks is not None:
            per_block = _per_block(group, ratio, options.max_ratio, wanted[gid])
            if per_block:
                plan[gid] = lowest_per_block(scores[gid], group.blocks, per_block)
            continue
        n = units_to_remove(size, ratio, options.max_ratio, round_to, wanted[gid])
        if n:
            plan[gid] = _lowest(np.asarray(scores[gid]), n)
    return keep_axes_nonempty(dg, plan, scores)


def keep_axes_nonempty(dg, plan: dict[int, list[int]], scores: dict[int, np.ndarray]) -> dict[int, list[int]]:
    """Give back the best-scored removed units of groups that together would empty a shared axis (in a group with
    equal blocks, the best-scored removed unit of every block, so the counts stay equal)."""
    plan = {g: list(u) for g, u in plan.items()}
    while True:
        removed: dict[ChannelAxis, set[int]] = {}
        for gid, units in plan.items():
            for axis, table in dg.group(gid).members.items():
                removed.setdefault(axis, set()).update(table[units].ravel().tolist())
        full = [ax for ax, idx in removed.items() if len(idx) >= dg.record.static_size(ax)]
        if not full:
            return {g: u for g, u in plan.items() if u}
        axis = full[0]
        gid = max((g for g in plan if plan[g] and axis in dg.group(g).members),
                  key=lambda g: max(scores[g][plan[g]]))
        blocks = dg.group(gid).blocks
        for block in ([None] if blocks is None else np.unique(blocks[plan[gid]]).tolist()):
            units = [u for u in plan[gid] if block is None or blocks[u] == block]
            plan[gid].remove(max(units, key=lambda u: scores[gid][u]))
