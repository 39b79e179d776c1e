"""Untie constants that nodes share only because their values happen to be identical.

Exporters and optimizers deduplicate identical constants: in a freshly initialised model every BatchNormalization
scale is all ones, so the dynamo exporter writes one initializer for all of them, and the channel groups of
unrelated layers would be merged through it (issue 8 measured 91 groups instead of 122 on DenseNet-121; the BN
handler has since stopped coupling shared parameters, this is the general rule). The rule, per constant read by
several nodes:

- every reader uses it as a per-channel parameter no framework ties between layers (a normalisation's scale, bias,
  mean or variance; a Conv/Gemm bias; a 1-D bias added to a MatMul/Gemm/Conv output), or its values are all equal
  and every reader is such a parameter or plain arithmetic (Add, Mul, ...): **incidental**, untied (each
  further use gets its own copy, the values shared, not copied);
- a weight (Conv/MatMul/Gemm, an embedding table read by Gather) whose readers the exporter's node metadata places
  in *different module instances that each had a parameter of their own* (the dynamo exporter writes every node's
  ``pkg.torch.onnx.name_scopes`` and the FX node it came from, whose arguments name the parameter placeholders
  ``p_encoder_layers_1_linear1_weight``): **incidental**, untied. This is ``nn.TransformerEncoder``'s deep-copied
  layers at initialisation, merged into one initializer by the exporter. Readers in one module instance (a layer
  called N times, ALBERT-style), or a reader whose FX node names no parameter of its own module (an ``lm_head``
  reading the embedding it is tied to), keep the tie; without metadata (TorchScript, other converters) the graph
  cannot tell, and the tie is kept;
- otherwise (a weight, an unknown role): a **real tie** (tied input/output embeddings, ALBERT-style shared layers),
  kept.

Each decision is a ``TieDecision``; ``onnxprune groups --details`` and ``--json`` show them. After pruning,
``reshare_constants`` makes copies whose values are still equal share one constant again, so a model with nothing
pruned is written as compactly as it came.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

_MAX_VALUE_CHECK = 1 << 16  # constants up to this many elements may be read to see whether all values are equal
_NORMS = {"BatchNormalization": (1, 2, 3, 4), "LayerNormalization": (1, 2), "InstanceNormalization": (1, 2),
          "GroupNormalization": (1, 2), "SimplifiedLayerNormalization": (1,), "RMSNormalization": (1,)}
_WEIGHTS = {"Conv": (1,), "ConvTranspose": (1,), "MatMul": (0, 1), "Gemm": (0, 1), "Gather": (0,), "Einsum": None,
            "LSTM": (1, 2), "GRU": (1, 2), "RNN": (1, 2)}
_BIASES = {"Conv": (2,), "ConvTranspose": (2,), "Gemm": (2,), "LSTM": (3,), "GRU": (3,), "RNN": (3,)}
_BIASED = {"MatMul", "Gemm", "Conv", "ConvTranspose"}
# arithmetic where an all-equal constant is a value, not a tie (a decomposed RMSNorm's weight of ones); anything else
# read with others (quantization scales a QuantizeLinear and the QLinearConv after it must agree on) stays tied
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "PRelu", "Where", "Clip"}


@dataclass
class TieDecision:
    """What was decided about one constant read by several nodes: ``untied`` (its readers got ``copies``) or kept."""

    name: str
    readers: list[str]
    roles: list[str]
    untied: bool
    reason: str
    copies: list[str] = field(default_factory=list)  # untied: the tensor each use (node input) reads, in order
    uses: list[tuple[str, int]] = field(default_factory=list)  # (node, input index) of each use, as ``roles``

    def origin(self, tensor: str) -> dict | None:
        """Where the untied copy (or the original) ``tensor`` came from: {"initializer": the constant it was untied
        from, "node": the node it was made for, "input": that node's input index, "role": how that node reads it};
        None when ``tensor`` is not one of this decision's copies."""
        if not self.untied or tensor not in self.copies:
            return None
        k = self.copies.index(tensor)
        node, index = self.uses[k] if k < len(self.uses) else (None, None)
        return {"initializer": self.name, "node": node, "input": index, "role": self.roles[k]}

    def describe(self) -> str:
        """One line: "untied: 'w' shared by a, b (identical values, BatchNormalization scale)" or "tie kept: ..."."""
        readers = ", ".join(self.readers[:4]) + (f" and {len(self.readers) - 4} more" if len(self.readers) > 4 else "")
        state = "untied" if self.untied else "tie kept"
        return f"{state}: '{self.name}' shared by {readers} ({self.reason})"

    def tensors(self) -> set[str]:
        """The constant and its copies."""
        return {self.name, *self.copies}

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"tensor": self.name, "readers": list(self.readers), "roles": list(self.roles), "untied": self.untied,
                "reason": self.reason, "copies": list(self.copies), "uses": [list(u) for u in self.uses],
                "text": self.describe()}


def _role(node: gs.Node, index: int, tensor: gs.Constant) -> tuple[str, str]:
    """(kind, description) of how ``node`` reads input ``index``: kind 'parameter' (per-channel, never tied across
    layers by a framework), 'weight' (may be tied on purpose) or 'other'."""
    if index in _NORMS.get(node.op, ()):
        names = ("", "scale", "bias", "mean", "variance") if node.op == "BatchNormalization" else ("", "scale", "bias")
        return "parameter", f"{node.op} {names[index] if index < len(names) else 'input'}"
    if index in _BIASES.get(node.op, ()):
        return "parameter", f"{node.op} bias"
    if node.op in _WEIGHTS and (_WEIGHTS[node.op] is None or index in _WEIGHTS[node.op]):
        return "weight", f"{node.op} {'data' if node.op == 'Gather' else 'weight'}"
    if node.op == "Add" and len(tensor.shape or ()) == 1:
        other = node.inputs[1 - index] if len(node.inputs) == 2 else None
        producer = other.inputs[0] if other is not None and other.inputs else None
        if producer is not None and producer.op in _BIASED:
            return "parameter", f"bias added to {producer.op}"
    if node.op in _ELEMENTWISE:
        return "elementwise", f"{node.op} input {index}"
    return "other", f"{node.op} input {index}"


def _all_equal(tensor: gs.Constant) -> bool:
    """Whether every element of a small constant has one value (large ones are not read: False)."""
    shape = tensor.shape or ()
    if int(np.prod(shape)) > _MAX_VALUE_CHECK or int(np.prod(shape)) < 2:
        return False
    values = np.asarray(tensor.values).reshape(-1)
    return bool(np.all(values == values[0]))


def untie_constants(graph: gs.Graph, node_metadata: dict | None = None) -> list[TieDecision]:
    """Decide, for every constant read by several nodes of ``graph`` (not inside subgraphs), whether the sharing is
    incidental, and untie those that are (the first use keeps the constant, each other node input reading it gets
    a copy that shares its values). Constants with no axis longer than 1 couple nothing and are left alone.
    ``node_metadata``: {node name: [(key, value)]} as ``LoadedModel.node_metadata``: the dynamo exporter's module
    scopes, which can show a shared weight to be incidental (module docstring). Returns the decisions, in graph
    order."""
    decisions = []
    taken = set(graph.tensors())
    for tensor in list(graph.tensors().values()):
        if not isinstance(tensor, gs.Constant) or not _is_float(tensor) or tensor in graph.inputs \
                or tensor in graph.outputs:
            continue
        nodes = list({id(node): node for node in tensor.outputs}.values())  # a node reading it twice is listed twice
        uses = [(node, k) for node in nodes for k, t in enumerate(node.inputs) if t is tensor]
        readers = list(dict.fromkeys(node.name for node, _ in uses))
        if len(uses) < 2 or max(tensor.shape or (1,), default=1) < 2:
            continue
        roles = [_role(node, k, tensor) for node, k in uses]
        kinds = {kind for kind, _ in roles}
        described = ", ".join(dict.fromkeys(text for _, text in roles))
        separate = _separate_modules(nodes, node_metadata or {}) if "weight" in kinds else None
        if "weight" in kinds and separate is None:
            decisions.append(TieDecision(tensor.name, readers, [t for _, t in roles], False,
                                         f"weight sharing: {described}{_why_tied(nodes, node_metadata or {})}"))
            continue
        repeated = _one_call_site(nodes, node_metadata or {}) if separate is None else None
        if repeated is not None:
            decisions.append(TieDecision(tensor.name, readers, [t for _, t in roles], False,
                                         f"{described}: {repeated}"))
            continue
        if separate is not None:
            reason = f"identical values, {described} of separate modules: {separate}"
        elif kinds == {"parameter"}:
            reason = f"identical values, {described}: per-layer parameters no framework ties"
        elif kinds <= {"parameter", "elementwise"} and _all_equal(tensor):
            reason = f"identical values, every element {np.asarray(tensor.values).reshape(-1)[0]!r}: {described}"
        else:
            decisions.append(TieDecision(tensor.name, readers, [t for _, t in roles], False,
                                         f"shared as {described}: not known to be incidental"))
            continue
        values = tensor._values if isinstance(tensor._values, np.ndarray) else np.asarray(tensor.values)
        copies = [tensor] + [gs.Constant(_fresh(f"{tensor.name}__untied", taken), values,
                                         data_location=tensor.data_location, export_dtype=tensor.export_dtype)
                             for _ in uses[1:]]
        # the copies share one numpy array (gs writes lazily loaded values through their TensorProto, renaming it:
        # that proto cannot be shared); small per-channel parameters only are read here
        for (node, k), copy in zip(uses, copies):  # one per use: BN reads one tensor of ones as scale and variance
            node.inputs[k] = copy
        decisions.append(TieDecision(tensor.name, readers, [t for _, t in roles], True, reason,
                                     [c.name for c in copies], [(node.name, k) for node, k in uses]))
    return decisions


_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
_FX_KEY = "pkg.torch.onnx.fx_node"


def _module_and_parameters(node: gs.Node, metadata: dict) -> tuple[str, set[str]] | None:
    """(innermost module scope, parameter placeholders of that module its FX node reads) from the dynamo
    exporter's metadata of ``node``; None without it."""
    props = dict(metadata.get(node.name, ()))
    if _SCOPES_KEY not in props or _FX_KEY not in props:
        return None
    try:
        scopes = [str(s) for s in ast.literal_eval(props[_SCOPES_KEY])]
    except (ValueError, SyntaxError):
        return None
    if len(scopes) < 2 or not scopes[-2]:
        return None
    module = scopes[-2]  # the last entry names the op (linear_3), the one before the innermost module
    prefix = "p_" + module.replace(".", "_") + "_"
    arguments = set(re.findall(r"%(p_\w+)", props[_FX_KEY].split("args =", 1)[-1]))
    return module, {a for a in arguments if a.startswith(prefix)}


def _separate_modules(nodes: list[gs.Node], metadata: dict) -> str | None:
    """A description when the dynamo metadata shows that every reader of a shared weight is in a module instance
    of its own and read a parameter placeholder of that module (the parameters were separate in torch, merged by
    the exporter because their values were equal); None otherwise (no metadata: the tie is kept)."""
    found = [_module_and_parameters(node, metadata) for node in nodes]
    if any(f is None or not f[1] for f in found):
        return None
    placeholders = [p for _, params in found for p in params]
    if len(set(placeholders)) != len(placeholders):  # two readers name one parameter: it was read twice
        return None
    modules = list(dict.fromkeys(m for m, _ in found))
    shown = ", ".join(modules[:3]) + (f" and {len(modules) - 3} more" if len(modules) > 3 else "")
    return f"{shown} each read a parameter of their own (dynamo name scopes)"


def _one_call_site(nodes: list[gs.Node], metadata: dict) -> str | None:
    """A description when the metadata shows every reader in one module instance reading the same parameters
    (a layer called repeatedly, ALBERT-style: its bias is tied with its weight); None otherwise."""
    found = [_module_and_parameters(node, metadata) for node in nodes]
    if any(f is None or not f[1] for f in found) or len({m for m, _ in found}) != 1 \
            or len({frozenset(params) for _, params in found}) != 1:
        return None
    return f"one module instance ({found[0][0]}) called repeatedly (dynamo name scopes)"


def _why_tied(nodes: list[gs.Node], metadata: dict) -> str:
    """What the metadata says about a kept weight tie ('' without metadata)."""
    found = [_module_and_parameters(node, metadata) for node in nodes]
    if any(f is None for f in found):
        return ""
    modules = [m for m, _ in found]
    if len(set(modules)) == 1:
        return f"; one module instance ({modules[0]}) called repeatedly"
    lacking = [m for m, params in found if not params]
    if lacking:
        return f"; {lacking[0]} reads no parameter of its own (a tied parameter)"
    return "; the readers read one parameter placeholder"


def _is_float(tensor: gs.Constant) -> bool:
    try:
        return bool(np.issubdtype(np.dtype(tensor.dtype), np.floating))
    except TypeError:  # an ONNX type numpy does not know (bfloat16, float8): not read, left alone
        return False


def _fresh(base: str, taken: set[str]) -> str:
    k = 1
    while f"{base}{k}" in taken:
        k += 1
    taken.add(f"{base}{k}")
    return f"{base}{k}"


def reshare_constants(graph: gs.Graph, decisions: list[TieDecision]) -> int:
    """Let readers of untied copies whose values are still equal (nothing pruned on either side, or the same)
    read one constant again: the first of them in reader order. Returns how many copies were dropped."""
    tensors = graph.tensors()
    dropped = 0
    for decision in decisions:
        if not decision.untied:
            continue
        kept: list[gs.Constant] = []
        replace: dict[int, gs.Constant] = {}
        for name in decision.copies:
            copy = tensors.get(name)
            if not isinstance(copy, gs.Constant):
                continue
            same = next((k for k in kept if _equal(k, copy)), None)
            if same is None:
                kept.append(copy)
            else:
                replace[id(copy)] = same
        for copy_id, same in replace.items():
            dropped += 1
            for node in graph.nodes:
                for k, t in enumerate(node.inputs):
                    if id(t) == copy_id:
                        node.inputs[k] = same
    return dropped


def _equal(a: gs.Constant, b: gs.Constant) -> bool:
    if a._values is b._values:
        return True
    if tuple(a.shape or ()) != tuple(b.shape or ()) or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(np.asarray(a.values), np.asarray(b.values)))


# the attribute a torch module keeps a parameter of each role under (the last word of a role, see ``_role``)
_ATTRIBUTES = {"scale": ("weight",), "bias": ("bias",), "mean": ("running_mean",), "variance": ("running_var",),
               "weight": ("weight", "in_proj_weight"), "data": ("weight",)}


def module_scope(node_name: str, metadata: dict) -> str | None:
    """The innermost module scope the dynamo exporter wrote for node ``node_name`` (None without metadata)."""
    props = dict(metadata.get(node_name, ()))
    try:
        scopes = [str(s) for s in ast.literal_eval(props[_SCOPES_KEY])]
    except (KeyError, ValueError, SyntaxError):
        return None
    return scopes[-2] if len(scopes) >= 2 and scopes[-2] else None


def framework_parameter(origin: dict, metadata: dict) -> str | None:
    """The torch parameter or buffer the use ``origin`` (``TieDecision.origin``) really read: its node's module
    scope plus the attribute of its role, when the node's FX node names that placeholder (``p_net_4_weight`` /
    ``b_net_4_running_var``); None when the metadata does not show it."""
    scope = module_scope(str(origin.get("node")), metadata)
    props = dict(metadata.get(str(origin.get("node")), ()))
    if scope is None or _FX_KEY not in props:
        return None
    arguments = set(re.findall(r"%([pb]_\w+)", props[_FX_KEY].split("args =", 1)[-1]))
    word = str(origin.get("role", "")).split()[-1] if origin.get("role") else ""
    mangled = scope.replace(".", "_")
    found = [a for a in _ATTRIBUTES.get(word, ()) if {f"p_{mangled}_{a}", f"b_{mangled}_{a}"} & arguments]
    return f"{scope}.{found[0]}" if len(found) == 1 else None


def role_attributes(role: str) -> tuple[str, ...]:
    """The attribute names a torch module keeps a parameter of ``role`` (a ``TieDecision`` role) under."""
    return _ATTRIBUTES.get(role.split()[-1] if role else "", ())
