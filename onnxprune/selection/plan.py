"""Plan: the units chosen for removal, how they were chosen, and the JSON that lets a user apply the same pruning
to the framework's original weights (and ``validate`` check it against the mask oracle)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.analysis import DependencyGraph
from onnxprune.errors import OnnxPruneError, PruneError
from onnxprune.ir.provenance import source_entries
from onnxprune.scoring import Scores


@dataclass
class Plan:
    """{group id: removed units} (``groups``, what ``DependencyGraph.prune`` takes) and how it was chosen."""

    groups: dict[int, list[int]]
    criterion: str
    ratio: float
    scores: Scores = field(default_factory=Scores, repr=False)
    notes: list[str] = field(default_factory=list)

    def to_dict(self, dg: DependencyGraph) -> dict:
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


def load_plan(source: str | os.PathLike | dict, dg: DependencyGraph) -> dict[int, list[int]]:
    """{group id: removed units} from a plan JSON (path or parsed dict), matching each group's root tensor/axis
    against ``dg``'s groups; PruneError when a root is unknown or its size differs."""
    if not isinstance(source, dict):
        try:
            with open(source) as f:
                source = json.load(f)
        except (OSError, ValueError) as exc:
            raise OnnxPruneError(f"cannot read plan {source}: {exc}") from None
    by_root = {(g.root.tensor, g.root.axis): g for g in dg.channel_groups()}
    plan: dict[int, list[int]] = {}
    for entry in source.get("groups", []):
        key = (entry["root"]["tensor"], int(entry["root"]["axis"]))
        group = by_root.get(key)
        if group is None:
            raise PruneError(f"plan group with root tensor '{key[0]}' axis {key[1]} matches no group of the model")
        if "size" in entry and int(entry["size"]) != group.size:
            raise PruneError(f"plan group with root tensor '{key[0]}' axis {key[1]} has {entry['size']} channels; "
                             f"the model's has {group.size}")
        plan[group.id] = sorted(int(u) for u in entry["removed"])
    return plan
