"""The report's tables, computed from the analysed model, the plan and the pruned graph: one row per channel group
(what it is, its width before and after, the share of the model's MACs in the layers it slices), one row per
weight-bearing layer along the network's depth, MACs and parameters per stage, and the blocked groups with their
reasons. Every value is plain JSON (docs/report_format.md lists the keys; they stay stable).

A *layer* is a node with a float constant input that has at least two dimensions above 1 (a weight, not a bias or a
scale). A *stage* is the prefix of a node's module path (from the TorchScript name scopes, ``/layers/layers.0/conv1/
Conv`` -> ``layers.0.conv1``, or from a dotted weight name, ``layers.0.conv1.weight``) up to and including its first
numbered container (``layers.0``, ``encoder.layer.3``, ``layer1`` in ``layer1.0.conv1``, unless such a name recurs
further down, as ``ln1`` in ``ln1.0`` ... ``ln1.1``: then ``ln1.0``); paths without one are their own stage
(``conv1``, ``fc``), or their first two tokens below a root every path shares (``model.embeddings``). Stages hold
parameters: a node of a module holding none (``relu``, ``avgpool``) joins the stage before it, a node with no path
the next node that has a stage. When that gives fewer than two or more than
``MAX_STAGES`` stages (flat names such as ``node_Conv_12`` with unnamed weights), the nodes are split into quarters
of the depth instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.analysis import DependencyGraph, Group
from onnxprune.handlers import ShapeView, UnknownShape, handler_for
from onnxprune.ir.graph import all_nodes, subgraphs

SCHEMA_VERSION = 1
MAX_STAGES = 24
REPORT_KEYS = ("schema_version", "groups_table", "layers", "stages", "blocked")
CHANNEL_FIRST = {"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "BatchNormalization",
                 "InstanceNormalization", "GroupNormalization"}
_NUMBERED = re.compile(r"^[A-Za-z_]+\d+$")


def group_kind(group: Group) -> str:
    """'heads' (one unit is one attention head), 'hidden' (a normalised residual width) or 'channels'
    (the same tests as ``onnxprune.selection.select.is_heads`` / ``is_hidden``)."""
    if "heads" in group.labels:
        return "heads"
    return "hidden" if "normalized" in group.labels else "channels"


def node_macs(node: gs.Node) -> int:
    """Multiply-accumulates of one sample through ``node`` by its handler (0 when unknown), as ``count_macs`` sums."""
    handler = handler_for(node)
    if handler is None:
        return 0
    try:
        return int(handler.macs(node, ShapeView(node)))
    except (UnknownShape, TypeError, IndexError):
        return 0


def report_tables(dg: DependencyGraph, plan: dict[int, Iterable[int]], pruned: gs.Graph) -> dict:
    """The report's tables: ``{"schema_version", "groups_table", "layers", "stages", "blocked"}`` for the model
    analysed in ``dg``, pruned by ``plan`` ({group id: removed units}) into ``pruned``
    (``onnxprune.apply.apply_plan(dg, plan).graph``). Merge it into the pipeline's report dict."""
    plan = {int(g): sorted({int(u) for u in units}) for g, units in plan.items()}
    # If/Loop/Scan bodies are listed node by node (every branch; their node itself counts 0, so nothing counts twice)
    before, after = list(all_nodes(dg.graph)), _matching_nodes(dg.graph, pruned)
    macs_before = {id(n): 0 if subgraphs(n) else node_macs(n) for n in before}
    macs_after = {id(n): node_macs(a) if a is not None and not subgraphs(a) else 0 for n, a in zip(before, after)}
    total = sum(macs_before.values())
    counterpart = {id(n): a for n, a in zip(before, after)}
    stages = stage_names(before)
    return {
        "schema_version": SCHEMA_VERSION,
        "groups_table": [_group_row(g, plan.get(g.id, []), macs_before, macs_after, total)
                         for g in dg.channel_groups()],
        "layers": _layer_rows(before, counterpart, macs_before, macs_after, stages),
        "stages": _stage_rows(before, counterpart, macs_before, macs_after, stages),
        "blocked": [_blocked_row(g) for g in dg.channel_groups() if not g.prunable],
    }


# -- groups ------------------------------------------------------------------------------------------------------
def _group_row(group: Group, units: list[int], macs_before: dict, macs_after: dict, total: int) -> dict:
    nodes = _group_nodes(group)
    before = sum(macs_before[id(n)] for n in nodes)
    after = sum(macs_after[id(n)] for n in nodes)
    status = "blocked" if not group.prunable else ("pruned" if units else "kept")
    return {"id": group.id, "root": {"tensor": group.root.tensor, "axis": group.root.axis},
            "layer": _root_layer(group), "kind": group_kind(group), "status": status,
            "width": {"before": group.size, "after": group.size - len(units)},
            "macs": {"before": before, "after": after, "share": round(before / total, 6) if total else 0.0},
            "exact": group.exact}


def _group_nodes(group: Group) -> list[gs.Node]:
    """Nodes reading a constant member of the group (the layers whose weights it slices), in graph order."""
    seen: dict[int, gs.Node] = {}
    for axis in group.constants():
        for node in group.depgraph.tensors[axis.tensor].outputs:
            seen.setdefault(id(node), node)
    return list(seen.values())


def _root_layer(group: Group) -> str | None:
    """Name of the node the root axis belongs to: the one that reads the root weight, or that makes the root
    activation."""
    tensor = group.depgraph.tensors.get(group.root.tensor)
    if tensor is None:
        return None
    if isinstance(tensor, gs.Constant):
        return tensor.outputs[0].name if tensor.outputs else None
    return tensor.inputs[0].name if tensor.inputs else None


def _blocked_row(group: Group) -> dict:
    return {"id": group.id, "root": {"tensor": group.root.tensor, "axis": group.root.axis},
            "layer": _root_layer(group), "kind": group_kind(group), "width": group.size,
            "reasons": list(group.blocked_reasons)}


# -- layers ------------------------------------------------------------------------------------------------------
def _matching_nodes(graph: gs.Graph, pruned: gs.Graph) -> list[gs.Node | None]:
    """The pruned graph's node for every node of ``graph``, bodies included (apply keeps nodes and their order; by
    name otherwise)."""
    nodes, pruned_nodes = list(all_nodes(graph)), list(all_nodes(pruned))
    if len(nodes) == len(pruned_nodes) and all(a.op == b.op and a.name == b.name for a, b in zip(nodes, pruned_nodes)):
        return pruned_nodes
    by_name = {n.name: n for n in pruned_nodes if n.name}
    return [by_name.get(n.name) if n.name else None for n in nodes]


def _weights(node: gs.Node) -> list[gs.Constant]:
    """Float constants read by ``node`` (each once)."""
    found = {}
    for tensor in node.inputs:
        if isinstance(tensor, gs.Constant) and np.issubdtype(np.dtype(tensor.dtype), np.floating):
            found.setdefault(tensor.name, tensor)
    return list(found.values())


def _is_layer(node: gs.Node) -> bool:
    return any(sum(int(d) > 1 for d in w.shape) >= 2 for w in _weights(node))


def _width(node: gs.Node | None) -> int | None:
    """Size of the channel axis of the node's first output: axis 1 for convolutions and normalisations, the last
    axis otherwise (Gemm, MatMul, recurrent layers, embeddings)."""
    if node is None or not node.outputs or node.outputs[0].shape is None or not len(node.outputs[0].shape):
        return None
    dim = node.outputs[0].shape[1 if node.op in CHANNEL_FIRST and len(node.outputs[0].shape) > 1 else -1]
    return int(dim) if isinstance(dim, (int, np.integer)) else None


def _layer_rows(nodes: list[gs.Node], counterpart: dict, macs_before: dict, macs_after: dict,
                stages: list[str]) -> list[dict]:
    rows = []
    for node, stage in zip(nodes, stages):
        if not _is_layer(node):
            continue
        new = counterpart[id(node)]
        weight = max(_weights(node), key=lambda w: int(np.prod(w.shape)))
        rows.append({"depth": len(rows), "name": node.name, "op": node.op, "module": ".".join(module_path(node)),
                     "stage": stage, "weight": weight.name,
                     "width": {"before": _width(node), "after": _width(new)},
                     "macs": {"before": macs_before[id(node)], "after": macs_after[id(node)]},
                     "params": {"before": _params(node), "after": _params(new)}})
    return rows


def _params(node: gs.Node | None, seen: set[str] | None = None) -> int:
    """Elements of the node's float constants (those not in ``seen``, which is updated)."""
    if node is None:
        return 0
    total = 0
    for weight in _weights(node):
        if seen is not None:
            if weight.name in seen:
                continue
            seen.add(weight.name)
        total += int(np.prod(weight.shape))
    return total


# -- stages ------------------------------------------------------------------------------------------------------
def module_path(node: gs.Node) -> list[str]:
    """The module path of ``node`` as tokens: from TorchScript name scopes (``/layers/layers.1/downsample/
    downsample.0/Conv`` -> ['layers', '1', 'downsample', '0']), else from its largest dotted float weight
    (``layers.0.conv1.weight``); [] if none."""
    name = node.name or ""
    if "/" in name:
        path: list[str] = []
        for scope in [s for s in name.split("/") if s][:-1]:
            tokens = [t for t in scope.split(".") if t]
            # TorchScript names a child scope with its parent's own name in front ("downsample.0" inside
            # "downsample", "mlp.0.0" inside "mlp.0"): drop that overlap
            overlap = max((k for k in range(1, min(len(path), len(tokens) - 1) + 1) if path[-k:] == tokens[:k]),
                          default=0)
            path += tokens[overlap:]
        return path
    for weight in sorted(_weights(node), key=lambda w: -int(np.prod(w.shape))):
        if "." in weight.name and "::" not in weight.name:
            return weight.name.split(".")[:-1]
    return []


def _cut(tokens: list[str], named_containers: bool, root: str | None) -> int:
    """How many leading tokens of a module path name its stage (see ``stage_of``)."""
    for i, token in enumerate(tokens):
        if token.isdigit() or (named_containers and _NUMBERED.match(token) and i < len(tokens) - 1):
            return i + 1
    return min(2 if tokens[:1] == [root] else 1, len(tokens))


def stage_of(tokens: list[str], named_containers: bool = True, root: str | None = None) -> str | None:
    """The stage of a module path: up to its first numbered container (``layers.0``, ``encoder.layer.3``, and with
    ``named_containers`` also ``layer1`` of ``layer1.0.conv1``), else its first token, or its first two when the
    first is ``root`` (the one module every path starts with: ``model.embeddings``); None for an empty path."""
    return ".".join(tokens[:_cut(tokens, named_containers, root)]) or None


def stage_names(nodes: list[gs.Node]) -> list[str]:
    """Every node's stage (see the module docstring). Containers named like ``layer1`` are stages when each such
    name forms one run along the depth (torchvision's ResNet); where one recurs (``ln1.0`` ... ``ln1.1``: a list
    of norms, one per block), only numbered tokens count (``ln1.0``)."""
    paths = [module_path(n) for n in nodes]
    holds = [any(int(np.prod(w.shape)) > 1 for w in _weights(n)) for n in nodes]
    firsts = {p[0] for p in paths if p}
    root = next(iter(firsts)) if len(firsts) == 1 else None
    for named_containers in (True, False):
        named = _place([stage_of(p, named_containers, root) for p in paths], holds)
        runs = [s for k, s in enumerate(named) if k == 0 or s != named[k - 1]]
        if len(runs) == len(set(runs)):
            break
    distinct = len(dict.fromkeys(named))
    if None in named or not 2 <= distinct <= MAX_STAGES:
        count = len(nodes)
        return [f"quarter {4 * k // max(count, 1) + 1} of depth" for k in range(count)]
    return named


def _place(named: list[str | None], holds: list[bool]) -> list[str | None]:
    """Stages hold parameters (``holds``: the node reads a float constant of more than one element). A node of a
    module that holds none (relu, pool, a scalar scale) joins the stage before it (it works on that stage's
    output); a node with no path, or such a node before any stage, joins the next node that has a stage; trailing
    ones join the last stage."""
    holding = {s for s, held in zip(named, holds) if held and s is not None}
    placed: list[str | None] = []
    previous = None
    for stage in named:
        if stage in holding:
            previous = stage
            placed.append(stage)
        else:
            placed.append(previous if stage is not None else None)
    following = None
    for k in range(len(placed) - 1, -1, -1):
        if placed[k] is None:
            placed[k] = following
        else:
            following = placed[k]
    last = next((s for s in placed if s is not None), None)
    for k, stage in enumerate(placed):
        if stage is None:
            placed[k] = last
        else:
            last = stage
    return placed


def _stage_rows(nodes: list[gs.Node], counterpart: dict, macs_before: dict, macs_after: dict,
                stages: list[str]) -> list[dict]:
    rows: dict[str, dict] = {}
    seen_before: set[str] = set()
    seen_after: set[str] = set()
    for node, stage in zip(nodes, stages):
        row = rows.setdefault(stage, {"name": stage, "nodes": 0, "layers": 0, "macs": {"before": 0, "after": 0},
                                      "params": {"before": 0, "after": 0}})
        row["nodes"] += 1
        row["layers"] += _is_layer(node)
        row["macs"]["before"] += macs_before[id(node)]
        row["macs"]["after"] += macs_after[id(node)]
        row["params"]["before"] += _params(node, seen_before)
        row["params"]["after"] += _params(counterpart[id(node)], seen_after)
    return list(rows.values())
