"""Plan: the units chosen for removal, how the model was analysed and the units chosen, and the JSON that lets a
user apply the same pruning to the framework's original weights and ``validate`` check it.

A plan names each group by its id and a *signature*: a hash of its root axis, its size and every member axis with
the indices each unit covers. Groups are the connected components of (axis, index) pairs, so no two groups share a
signature; one weight split into several groups (a cross-stage-partial Split, a fused QKV weight sliced in three)
gives several groups with the same root axis but different signatures. Re-analysing the original with the plan's
own ``PlanSettings`` gives the same groups, and each plan entry matches exactly one of them or is a clear error.

JSON (``schema_version`` 2): ``criterion``, ``ratio``, ``settings`` (the analysis options), ``exact`` (whether every
pruned group is mask-exact), ``groups`` (id, signature, root, size, exact, removed units, members with their removed
indices), ``initializers`` (shape and kept indices per pruned axis), ``parameters`` (the same under the framework
parameter names that folded initializers came from, and the parameters untied copies stand for) and ``notes``.
An untied copy (``bn.weight__untied1``, ``onnxprune.ir.untie``) carries ``untied_from`` in ``initializers``: the
constant it was untied from, the node and input it was made for, the role there and (dynamo) the node's module
scope; ``parameter`` when the exporter's metadata names the framework parameter that node read. Plans without
``schema_version`` (written before it existed) are matched by root tensor and axis, and refused where that is
ambiguous.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.analysis import AnalysisOptions, DependencyGraph, Group, analyse_model
from onnxprune.axes import ChannelAxis
from onnxprune.errors import OnnxPruneError, PruneError
from onnxprune.ir.provenance import source_entries
from onnxprune.ir.untie import framework_parameter, module_scope
from onnxprune.scoring import Scores

SCHEMA_VERSION = 2


@dataclass
class PlanSettings:
    """How the model a plan was made from was analysed, and what selection was told about heads and the hidden
    width: ``analyse`` with these gives the same groups again.

    factor_policy / repeat_policy / protect_io / allowed_io_axes / attention_units: the ``AnalysisOptions``
        (factor_policy is the one the analysis ran with: 'leading' whenever heads_ratio was given; attention_units
        'query_heads' for the query-head pass of ``--query-heads-ratio``).
    input_shapes: the ``--input-shape`` values ({input name: dims}). initializer_inputs: the loader's policy for
        initializers listed as graph inputs ('auto' | 'protect' | 'prune').
    heads_ratio / query_heads_ratio / no_hidden: the selection options that decided which groups were pruned
        (recorded for the reader; they do not change the groups).
    """

    factor_policy: str = "largest"
    repeat_policy: str | None = None
    input_shapes: dict[str, list] = field(default_factory=dict)
    initializer_inputs: str = "auto"
    heads_ratio: float | None = None
    no_hidden: bool = False
    protect_io: bool = True
    allowed_io_axes: tuple[ChannelAxis, ...] = ()
    attention_units: str = "kv_groups"
    query_heads_ratio: float | None = None

    @classmethod
    def of(cls, dg: DependencyGraph, **given) -> PlanSettings:
        """The settings ``dg`` was analysed with, as far as it records them (the analysis options and the loader's
        resolved initializer-input policy); ``given`` adds what it does not know (input_shapes, heads_ratio, ...)."""
        options = dg.record.options
        loaded = getattr(dg, "loaded", None)
        found = {"factor_policy": options.factor_policy, "repeat_policy": options.repeat_policy,
                 "protect_io": options.protect_io, "allowed_io_axes": tuple(sorted(options.allowed_io_axes)),
                 "attention_units": options.attention_units,
                 "initializer_inputs": loaded.initializer_inputs if loaded is not None else "auto"}
        return cls(**{**found, **given})

    def analysis_options(self) -> AnalysisOptions:
        """The AnalysisOptions these settings stand for."""
        return AnalysisOptions(factor_policy=self.factor_policy, repeat_policy=self.repeat_policy,
                               protect_io=self.protect_io, allowed_io_axes=set(self.allowed_io_axes),
                               attention_units=self.attention_units)

    def analyse(self, source) -> DependencyGraph:
        """``analyse_model(source)`` with these settings."""
        return analyse_model(source, input_shapes=dict(self.input_shapes) or None, options=self.analysis_options(),
                             initializer_inputs=self.initializer_inputs)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"factor_policy": self.factor_policy, "repeat_policy": self.repeat_policy,
                "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
                "initializer_inputs": self.initializer_inputs, "heads_ratio": self.heads_ratio,
                "no_hidden": self.no_hidden, "protect_io": self.protect_io,
                "allowed_io_axes": [{"tensor": a.tensor, "axis": a.axis} for a in self.allowed_io_axes],
                "attention_units": self.attention_units, "query_heads_ratio": self.query_heads_ratio}

    @classmethod
    def from_dict(cls, data: dict) -> PlanSettings:
        """Inverse of ``to_dict``; missing keys take the defaults (a plan written before settings were recorded)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OnnxPruneError(f"plan settings has unknown keys {unknown}; was it written by a newer onnxprune?")
        values = dict(data)
        values["input_shapes"] = {k: list(v) for k, v in (values.get("input_shapes") or {}).items()}
        values["allowed_io_axes"] = tuple(ChannelAxis(a["tensor"], int(a["axis"]))
                                          for a in values.get("allowed_io_axes") or ())
        return cls(**values)


def group_signature(group: Group) -> str:
    """A short hash that names ``group`` in its model: root axis, size, and every member axis (sorted) with the
    indices each unit covers. The same model analysed with the same settings gives the same signatures."""
    digest = hashlib.sha256(f"{group.root.tensor}\0{group.root.axis}\0{group.size}".encode())
    for axis in sorted(group.members):
        digest.update(f"\0{axis.tensor}\0{axis.axis}\0".encode())
        digest.update(np.ascontiguousarray(group.members[axis], dtype="<i8").tobytes())
    return digest.hexdigest()[:16]


def read_plan_json(source: str | os.PathLike | dict) -> dict:
    """The parsed plan JSON from a path (or the dict itself); OnnxPruneError when it cannot be read."""
    if isinstance(source, dict):
        return source
    try:
        with open(source) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise OnnxPruneError(f"cannot read plan {source}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise OnnxPruneError(f"{source} is not a plan JSON (no 'groups' list); write one with `prune --plan`")
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise OnnxPruneError(f"plan {source} has schema_version {version!r}; this onnxprune reads up to "
                             f"{SCHEMA_VERSION}")
    return data


@dataclass
class Plan:
    """{group id: removed units} (``groups``, what ``apply_plan`` takes), how they were chosen, the settings of the
    analysis they refer to, and (``depgraph``) that analysis itself once the plan is bound to it."""

    groups: dict[int, list[int]]
    criterion: str = "manual"
    ratio: float = 0.0
    scores: Scores = field(default_factory=Scores, repr=False)
    notes: list[str] = field(default_factory=list)
    settings: PlanSettings | None = None
    refit: bool = False  # the written model's kept weights were refit after pruning (onnxprune.reconstruct)
    depgraph: DependencyGraph | None = field(default=None, repr=False, compare=False)

    def bind(self, dg: DependencyGraph, settings: PlanSettings | None = None) -> Plan:
        """This plan tied to the analysis ``dg`` its group ids refer to (settings default to what ``dg`` records);
        PruneError when a group id is not one of ``dg``'s channel groups or a unit is out of range."""
        for gid, units in self.groups.items():
            group = _channel_group(dg, gid)
            _check_units(group, units, f"group {gid}")
        return dataclasses.replace(self, depgraph=dg, settings=settings or self.settings or PlanSettings.of(dg))

    def _graph(self, dg: DependencyGraph | None = None) -> DependencyGraph:
        dg = dg if dg is not None else self.depgraph
        if dg is None:
            raise PruneError("this plan is not bound to an analysis: pass the DependencyGraph or use Plan.bind(dg)")
        return dg

    def pruned_groups(self, dg: DependencyGraph | None = None) -> list[Group]:
        """The groups that lose at least one unit."""
        dg = self._graph(dg)
        return [dg.group(gid) for gid, units in sorted(self.groups.items()) if len(units)]

    @property
    def exact(self) -> bool:
        """Whether every pruned group is mask-exact: then the pruned model must equal the mask oracle."""
        return all(group.exact for group in self.pruned_groups())

    def inexact_reasons(self) -> dict[int, list[str]]:
        """{group id: why it is not mask-exact} for the pruned groups that are not."""
        return {g.id: list(g.inexact_reasons) for g in self.pruned_groups() if not g.exact}

    def to_dict(self, dg: DependencyGraph | None = None) -> dict:
        """JSON-ready plan (see the module docstring); ``dg``: the analysis, when the plan is not bound to it."""
        dg = self._graph(dg)
        settings = self.settings or PlanSettings.of(dg)
        removed = dg.resolve(self.groups)
        groups = []
        for gid, units in sorted(self.groups.items()):
            group = dg.group(gid)
            groups.append({"id": gid, "signature": group_signature(group),
                           "root": {"tensor": group.root.tensor, "axis": group.root.axis},
                           "size": group.size, "exact": group.exact, "labels": sorted(group.labels),
                           "removed": [int(u) for u in units],
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
        parameters = source_entries(sources, initializers)
        parameters.update(_untied_entries(dg, initializers))
        return {"schema_version": SCHEMA_VERSION, "criterion": self.criterion, "ratio": self.ratio,
                "settings": settings.to_dict(), "refit": self.refit,
                "exact": all(dg.group(g).exact for g, units in self.groups.items() if len(units)),
                "groups": groups, "initializers": initializers,
                "parameters": parameters, "notes": list(self.notes)}

    def save(self, path: str | os.PathLike, dg: DependencyGraph | None = None) -> None:
        """Write ``to_dict`` as indented JSON to ``path``."""
        with open(path, "w") as f:
            json.dump(self.to_dict(dg), f, indent=2)

    @classmethod
    def from_dict(cls, data: dict, dg: DependencyGraph) -> Plan:
        """The plan a JSON describes, bound to ``dg`` (the original analysed with ``settings_of(data)``): every
        entry must match exactly one channel group of ``dg``, by signature (or, for plans without
        ``schema_version``, by root tensor and axis); PruneError naming the entry otherwise."""
        data = read_plan_json(data)
        legacy = "schema_version" not in data
        by_signature: dict[str, list[Group]] = {}
        by_root: dict[tuple[str, int], list[Group]] = {}
        for group in dg.channel_groups():
            by_root.setdefault((group.root.tensor, group.root.axis), []).append(group)
            if not legacy:
                by_signature.setdefault(group_signature(group), []).append(group)
        groups: dict[int, list[int]] = {}
        for entry in data["groups"]:
            name = _entry_name(entry)
            root = (entry["root"]["tensor"], int(entry["root"]["axis"]))
            if legacy:
                found = by_root.get(root, [])
                if len(found) > 1:
                    raise PruneError(f"{name}: the model has {len(found)} groups with that root (groups "
                                     f"{[g.id for g in found]}); this plan predates group signatures, so it cannot "
                                     "say which: write it again with `prune --plan`")
            else:
                found = by_signature.get(str(entry.get("signature")), [])
            if not found:
                raise PruneError(f"{name} matches no group of the model{_near_miss(entry, by_root.get(root, []))}; "
                                 "was the plan made from this model, with the settings it records?")
            group = found[0]
            if "size" in entry and int(entry["size"]) != group.size:
                raise PruneError(f"{name} has {entry['size']} units; the model's group {group.id} has {group.size}")
            if group.id in groups:
                raise PruneError(f"{name} matches group {group.id}, which an earlier entry of the plan matched too")
            groups[group.id] = _check_units(group, entry.get("removed", []), name)
        settings = PlanSettings.from_dict(data.get("settings") or {})
        return cls(groups=groups, criterion=str(data.get("criterion", "manual")), ratio=float(data.get("ratio", 0.0)),
                   notes=list(data.get("notes", [])), settings=settings, refit=bool(data.get("refit", False)),
                   depgraph=dg)

    @classmethod
    def load(cls, source: str | os.PathLike | dict, dg: DependencyGraph) -> Plan:
        """``from_dict`` on a plan JSON file (or its parsed dict)."""
        return cls.from_dict(read_plan_json(source), dg)

    @staticmethod
    def settings_of(source: str | os.PathLike | dict) -> PlanSettings:
        """The settings a plan JSON records (defaults for plans written before they were recorded): analyse the
        original with ``settings_of(plan).analyse(original)`` before ``Plan.load``."""
        return PlanSettings.from_dict(read_plan_json(source).get("settings") or {})


def _untied_entries(dg: DependencyGraph, initializers: dict[str, dict]) -> dict[str, dict]:
    """Name the origin of each untied copy in ``initializers`` (``untied_from``: the constant it was untied from,
    the node and input it was made for, that node's role and module scope), and return {framework parameter:
    {"from": copy, "kept": ...}} for the copies whose parameter the exporter's node metadata names."""
    metadata = getattr(getattr(dg, "loaded", None), "node_metadata", None) or {}
    parameters = {}
    for decision in getattr(dg, "ties", []):
        for copy in decision.copies:
            origin = decision.origin(copy)
            if origin is None or copy not in initializers:
                continue
            scope = module_scope(str(origin["node"]), metadata)
            initializers[copy]["untied_from"] = {**origin, **({"scope": scope} if scope else {})}
            parameter = framework_parameter(origin, metadata)
            if parameter is not None:
                initializers[copy]["parameter"] = parameter
                if parameter != copy:
                    parameters[parameter] = {"from": copy, "kept": dict(initializers[copy]["kept"])}
    return parameters


def _channel_group(dg: DependencyGraph, gid) -> Group:
    if not isinstance(gid, (int, np.integer)) or not 0 <= int(gid) < len(dg.groups) \
            or dg.group(int(gid)).kind != "channel":
        raise PruneError(f"plan group {gid} is not a channel group of the model (it has "
                         f"{len(dg.channel_groups())} channel groups)")
    return dg.group(int(gid))


def _check_units(group: Group, units, name: str) -> list[int]:
    try:
        values = sorted(int(u) for u in units)
    except (TypeError, ValueError):
        raise PruneError(f"{name}: removed units must be integers, got {units!r}") from None
    if len(set(values)) != len(values) or (values and (values[0] < 0 or values[-1] >= group.size)):
        raise PruneError(f"{name}: removed units {values} must be distinct and in [0, {group.size}) "
                         f"(group {group.id}, root {group.root})")
    return values


def _entry_name(entry: dict) -> str:
    root = entry.get("root", {})
    return (f"plan group {entry.get('id', '?')} (root tensor '{root.get('tensor')}' axis {root.get('axis')}, "
            f"{entry.get('size', '?')} units, signature {entry.get('signature', 'none')})")


def _near_miss(entry: dict, same_root: list[Group]) -> str:
    if not same_root:
        return ": no group has that root"
    described = ", ".join(f"group {g.id} ({g.size} units, signature {group_signature(g)})" for g in same_root)
    return f": groups with that root differ in size or members: {described}"
