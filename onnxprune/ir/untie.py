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
- otherwise (a Conv/MatMul/Gemm weight, an embedding table read by Gather, an unknown role): a **real tie** (tied
  input/output embeddings, ALBERT-style shared layers), kept.

Each decision is a ``TieDecision``; ``onnxprune groups --details`` and ``--json`` show them. After pruning,
``reshare_constants`` makes copies whose values are still equal share one constant again, so a model with nothing
pruned is written as compactly as it came.
"""

from __future__ import annotations

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
                "reason": self.reason, "copies": list(self.copies), "text": self.describe()}


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


def untie_constants(graph: gs.Graph) -> list[TieDecision]:
    """Decide, for every constant read by several nodes of ``graph`` (not inside subgraphs), whether the sharing is
    incidental, and untie those that are (the first use keeps the constant, each other node input reading it gets
    a copy that shares its values). Constants with no axis longer than 1 couple nothing and are left alone. Returns the
    decisions, in graph order."""
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
        if "weight" in kinds:
            decisions.append(TieDecision(tensor.name, readers, [t for _, t in roles], False,
                                         f"weight sharing: {described}"))
            continue
        if kinds == {"parameter"}:
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
                                     [c.name for c in copies]))
    return decisions


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
