"""Which torch tensors an ONNX initializer came from, and how its axes and indices map onto them.

Exporters keep parameter names only some of the time: TorchScript with constant folding writes ``onnx::Conv_59``
(BatchNormalization folded in) and ``onnx::MatMul_333`` (a transposed Linear weight), the dynamo exporter writes
``val_0`` for LSTM weights it rebuilt, and our loader folds Transpose/Identity/Slice chains into new initializers.
So an initializer is located in three steps:

1. its own name or, for a folded initializer, the parameter it was folded from (``LoadedModel.sources``);
2. otherwise the scope of the node that consumes it, which both exporters write: TorchScript in the node name
   (``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``), dynamo in the node's ``pkg.torch.onnx.name_scopes``
   metadata (``['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d_3']``);
3. inside the modules found, the tensor is matched by *value* (equal, reshaped, transposed, or a slice of it), or
   by its role in the op where values cannot match: a Conv weight with a BatchNorm folded in (the BN is found by
   checking ``W * gamma / sqrt(var + eps)`` against the ONNX weight), a Conv bias the folding made up, LSTM/GRU
   weights whose gate blocks ONNX orders differently from torch (i-o-f-c vs i-f-g-o; z-r-h vs r-z-n).

An untied copy (``bn.weight__untied1``: ``onnxprune.ir.untie``) and the constant it was untied from stand for the
parameter of the one node each was made for: found by that node's role, by the parameter the dynamo metadata names,
or by its module's tensor of the role's attribute name (a fresh BatchNorm's weight and running_var are both ones).

Each match is a list of :class:`Target` (torch tensor, torch axis per ONNX axis, index map); a value check backs
every name-based match too, so a wrong guess is an error, never a silently wrong model.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import torch
from torch import nn

from onnxprune.errors import OnnxPruneError
from onnxprune.ir.untie import framework_parameter, role_attributes

# ONNX gate block g holds torch's gate block _GATES[op][g] (LSTM: ONNX i,o,f,c; torch i,f,g,o. GRU: z,r,h; r,z,n).
_GATES = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2), "RNN": (0,)}
_SCOPE_KEY = "pkg.torch.onnx.name_scopes"


class TorchMappingError(OnnxPruneError):
    """An ONNX initializer could not be mapped onto the torch module's parameters (names the initializer, its
    consumer node and the modules tried)."""


@dataclass
class Target:
    """One torch tensor that an ONNX initializer axis maps onto: ``name`` (qualified parameter or buffer name),
    ``axis`` (the torch axis), and ``index(onnx_indices) -> torch indices``."""

    name: str
    axis: int
    offset: int = 0
    gates: tuple[int, ...] | None = None  # gate permutation, with ``gate_size`` rows per gate
    gate_size: int = 0

    def index(self, idx: np.ndarray) -> np.ndarray:
        """Torch indices for the ONNX indices ``idx`` (already restricted to this target's part of the axis)."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.gates is not None:
            gate, unit = np.divmod(idx, self.gate_size)
            return np.asarray(self.gates, dtype=np.int64)[gate] * self.gate_size + unit
        return idx + self.offset


@dataclass
class Mapping:
    """How one ONNX initializer maps onto torch: per ONNX axis, a list of (lo, hi, Target): ONNX indices in
    [lo, hi) go to the target (minus lo). ``module``: the torch module found; ``how``: a short explanation;
    ``folded_bn``: the BatchNorm folded into a Conv weight (its per-channel tensors follow the output axis);
    ``exporter_constant``: an initializer torch does not hold (filled with one value by the exporter)."""

    initializer: str
    axes: dict[int, list[tuple[int, int, Target]]] = field(default_factory=dict)
    module: str | None = None
    how: str = ""
    folded_bn: str | None = None
    exporter_constant: bool = False


def torchscript_scope(node_name: str) -> list[str]:
    """Module names of a TorchScript node name, outermost first: ``/layer1/layer1.0/conv1/Conv`` ->
    ``['layer1', 'layer1.0', 'layer1.0.conv1']``. Each scope level is the module's name within its parent, where
    children of containers are written ``parent.child``; the op name (last part) is dropped."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2:
        return []
    names, current, previous = [], "", ""
    for part in parts[:-1]:
        local = part[len(previous) + 1:] if previous and part.startswith(previous + ".") else part
        current = f"{current}.{local}" if current else local
        names.append(current)
        previous = part
    return names


def _node_scopes(node: gs.Node, metadata: dict[str, list[str]]) -> list[str]:
    """Candidate module names for ``node``, innermost first."""
    found = metadata.get(node.name, [])
    return list(reversed([s for s in found if s])) + list(reversed(torchscript_scope(node.name or "")))


def node_metadata(path: str | None) -> dict[str, list[str]]:
    """{node name: dynamo name scopes} read from the model file (weights not loaded); {} without a path."""
    if not path:
        return {}
    model = onnx.load(path, load_external_data=False)
    found = {}
    for graph_node in model.graph.node:
        for prop in graph_node.metadata_props:
            if prop.key == _SCOPE_KEY and graph_node.name:
                try:
                    found[graph_node.name] = [str(s) for s in ast.literal_eval(prop.value)]
                except Exception:  # not a Python list literal: no scope from this node
                    pass
    return found


class Locator:
    """Maps ONNX initializers of an analysed model onto a torch module's parameters and buffers."""

    def __init__(self, module: nn.Module, dg, metadata: dict[str, list[str]] | None = None):
        self.module = module
        self.dg = dg
        loaded = getattr(dg, "loaded", None)
        self.sources = dict(getattr(loaded, "sources", None) or {})
        self.metadata = metadata if metadata is not None else node_metadata(getattr(loaded, "path", None))
        self.tensors = {}
        for name, t in module.named_parameters(remove_duplicate=False):
            self.tensors.setdefault(name, t)
        for name, t in module.named_buffers(remove_duplicate=False):
            self.tensors.setdefault(name, t)
        self.modules = dict(module.named_modules(remove_duplicate=False))
        self._bn_cache: dict[str, str | None] = {}
        # untied copies (and the constants they were untied from): the one use each stands for (ir/untie.py)
        self.untied = {c: d.origin(c) for d in getattr(dg, "ties", None) or [] if d.untied for c in d.copies}
        self.node_metadata = dict(getattr(loaded, "node_metadata", None) or {})

    # ---------------------------------------------------------------------------------------------- helpers
    def _value(self, name: str) -> np.ndarray:
        return np.asarray(self.dg.tensors[name].values)

    def _torch(self, name: str) -> np.ndarray:
        return self.tensors[name].detach().cpu().numpy()

    def _module_of_param(self, name: str) -> str | None:
        return name.rpartition(".")[0] if name in self.tensors else None

    def _scope_modules(self, node: gs.Node) -> list[str]:
        found = [s for s in _node_scopes(node, self.metadata) if s in self.modules]
        return list(dict.fromkeys(found))

    def _consumers(self, name: str) -> list[gs.Node]:
        return list(self.dg.tensors[name].outputs)

    def _where(self, name: str) -> str:
        nodes = ", ".join(f"{n.op} '{n.name}'" for n in self._consumers(name)) or "no node"
        return f"initializer '{name}' (used by {nodes})"

    # ---------------------------------------------------------------------------------------------- main
    def locate(self, name: str, axes: list[int]) -> Mapping:
        """The mapping of initializer ``name`` for its pruned ONNX ``axes``; TorchMappingError if none is found."""
        value = self._value(name)
        if name in self.untied:
            found = self._untied(name, value, self.untied[name])
            if found is not None:
                return found
        consumers = self._consumers(name)
        for node in consumers:
            role = self._by_role(name, value, node)
            if role is not None:
                return role
        direct = self._by_name(name, value)
        if direct is not None:
            return self._merged(name, value, direct)
        found = self._by_scope(name, value, axes)
        return found if found.exporter_constant else self._merged(name, value, found)

    def _untied(self, name: str, value: np.ndarray, origin: dict) -> Mapping | None:
        """An untied copy (or the constant it was untied from) stands for the parameter of the one node it was
        made for: found by that node's role (a Conv's), the parameter its dynamo metadata names, or a tensor of
        that node's module with its role's attribute name and equal values (a fresh BatchNorm's weight and
        running_var are both ones: the role decides)."""
        node = next((n for n in self._consumers(name) if n.name == origin["node"]), None)
        if node is None:
            return None
        found = self._by_role(name, value, node)
        if found is not None:
            return found
        parameter = framework_parameter(origin, self.node_metadata)
        if parameter is not None:
            found = self._named(name, value, parameter, list(range(value.ndim)))
            if found is not None:
                found.how += f" (untied copy of '{origin['initializer']}' for {node.op} '{node.name}')"
                return found
        attributes = role_attributes(str(origin.get("role", "")))
        for scope in self._scope_modules(node):
            for attribute in attributes:
                tensor = f"{scope}.{attribute}" if scope else attribute
                if tensor in self.tensors and match_value(value, self._torch(tensor), True) is not None:
                    found = self._by_value(name, value, scope, prefer=tensor)
                    if found is not None:
                        found.how += f" (untied copy of '{origin['initializer']}' for {node.op} '{node.name}')"
                        return found
        return None

    def _by_scope(self, name: str, value: np.ndarray, axes: list[int]) -> Mapping:
        consumers = self._consumers(name)
        tried: list[str] = []
        for node in consumers:
            for scope in self._scope_modules(node):
                tried.append(scope)
                found = self._by_value(name, value, scope)
                if found is not None:
                    return found
        constant = bool(value.size) and bool(np.all(value == value.reshape(-1)[0]))
        if not constant and "" not in tried:  # a tensor used at the root scope (LLaMA's inv_freq[None, :])
            found = self._by_value(name, value, "")
            if found is not None:
                return found
        if constant:
            scope = next((s for n in consumers for s in self._scope_modules(n)), None)
            return Mapping(name, module=scope, how="exporter constant (one repeated value), nothing to slice",
                           exporter_constant=True)
        raise TorchMappingError(f"{self._where(name)}, shape {list(value.shape)}, pruned on axes {axes}: no torch "
                                f"parameter or buffer matches it by name or by value (modules tried: "
                                f"{tried or 'none: the nodes carry no module scope'})")

    def _merged(self, name: str, value: np.ndarray, mapping: Mapping) -> Mapping:
        """An exporter that merges equal initializers (the dynamo exporter's optimizer: the identical layers of an
        ``nn.TransformerEncoder`` share one ``norm1.weight``) leaves one initializer for several torch tensors: each
        consumer whose module scopes do not hold the tensor found adds the equal tensor of its own module."""
        found = {t.name for targets in mapping.axes.values() for _, _, t in targets}
        held = {id(self.tensors[n]) for n in found}
        for node in self._consumers(name):
            for scope in self._scope_modules(node):
                prefix = f"{scope}." if scope else ""
                if any(n.startswith(prefix) for n in found):
                    break  # this consumer uses the tensor found (or one of its module's)
                other = self._by_value(name, value, scope)
                if other is None:
                    continue
                tensor = next(t.name for targets in other.axes.values() for _, _, t in targets)
                if id(self.tensors[tensor]) not in held:  # a tied parameter is sliced once
                    held.add(id(self.tensors[tensor]))
                    for axis, targets in other.axes.items():
                        mapping.axes.setdefault(axis, []).extend(targets)
                    mapping.how += f"; merged with the equal {tensor} ({node.op} '{node.name}')"
                break
        return mapping

    def _by_name(self, name: str, value: np.ndarray) -> Mapping | None:
        # The initializer's own name first: TorchScript writes a parameter equal to an earlier one as
        # Identity(earlier), named after the parameter itself, and the loader's provenance names the earlier one.
        for origin, axes in ((name, list(range(value.ndim))), self.sources.get(name, (None, None))):
            found = self._named(name, value, origin, axes) if origin is not None else None
            if found is not None:
                return found
        return None

    def _named(self, name: str, value: np.ndarray, origin: str, axes: list[int]) -> Mapping | None:
        if origin not in self.tensors:
            return None
        param = self._torch(origin)
        moved = np.transpose(param, axes) if len(axes) == param.ndim else None
        if moved is None or moved.shape != value.shape:
            return None
        result = Mapping(name, module=origin.rpartition(".")[0], how=f"name {origin}")
        for a, src in enumerate(axes):
            result.axes[a] = [(0, value.shape[a], Target(origin, src))]
        if not np.array_equal(moved, value):
            return None  # same name, other values (a Conv weight with BN folded in is handled by role)
        return result

    def _by_value(self, name: str, value: np.ndarray, scope: str, prefer: str | None = None) -> Mapping | None:
        """A tensor of module ``scope`` (``prefer`` first, then its own, then its children's) equal to ``value``
        reshaped, transposed or sliced."""
        prefix = f"{scope}." if scope else ""
        owned = [n for n in self.tensors if n.startswith(prefix)]
        owned.sort(key=lambda n: (n != prefer, n.count(".")))
        for whole in (True, False):  # a tensor equal to the whole value before one it is a slice of
            for tname in owned:
                found = match_value(value, self._torch(tname), whole)
                if found is not None:
                    result = Mapping(name, module=scope, how=f"value of {tname}")
                    for a, (src, offset) in found.items():
                        result.axes[a] = [(0, value.shape[a], Target(tname, src, offset=offset))]
                    return result
        return None

    # ---------------------------------------------------------------------------------------------- roles
    def _by_role(self, name: str, value: np.ndarray, node: gs.Node) -> Mapping | None:
        index = next((k for k, t in enumerate(node.inputs) if t.name == name), None)
        if node.op in ("Conv", "ConvTranspose") and index in (1, 2):
            return self._conv(name, value, node, index)
        if node.op in _GATES and index in (1, 2, 3):
            return self._recurrent(name, value, node, index)
        return None

    def _conv_module(self, node: gs.Node) -> str | None:
        weight = node.inputs[1].name
        origin = self.sources.get(weight, (weight, None))[0]
        candidates = [self._module_of_param(origin)] + self._scope_modules(node)
        kind = nn.modules.conv._ConvTransposeNd if node.op == "ConvTranspose" else nn.modules.conv._ConvNd
        for scope in candidates:
            module = self.modules.get(scope) if scope is not None else None
            if isinstance(module, kind) and (node.op == "ConvTranspose") == bool(module.transposed) \
                    and tuple(module.weight.shape) == tuple(self._value(weight).shape):
                return scope
        return None

    def _conv(self, name: str, value: np.ndarray, node: gs.Node, index: int) -> Mapping | None:
        scope = self._conv_module(node)
        if scope is None:
            return None
        conv = self.modules[scope]
        out_axis = 1 if conv.transposed else 0
        bn = self._folded_bn(scope, self._value(node.inputs[1].name))
        if bn is False:
            raise TorchMappingError(f"{self._where(name)}: the ONNX weight of {scope} differs from the torch "
                                    "weight and no BatchNorm folded into it explains the difference; was the "
                                    "model exported from this module with these weights?")
        result = Mapping(name, module=scope, folded_bn=bn or None,
                         how=f"{node.op} {'weight' if index == 1 else 'bias'} of {scope}"
                             + (f", BatchNorm {bn} folded in" if bn else ""))
        if index == 1:
            if conv.transposed and conv.groups != 1 and bn:
                raise TorchMappingError(f"{self._where(name)}: grouped ConvTranspose with a folded BatchNorm")
            for a in range(value.ndim):
                result.axes[a] = [(0, value.shape[a], Target(f"{scope}.weight", a))]
            if bn:
                extra = [(0, value.shape[out_axis], Target(f"{bn}.{p}", 0)) for p in _bn_tensors(self.modules[bn])]
                result.axes[out_axis] = result.axes[out_axis] + extra
        else:
            targets = []
            if conv.bias is not None:
                targets.append((0, value.shape[0], Target(f"{scope}.bias", 0)))
            if bn:
                targets += [(0, value.shape[0], Target(f"{bn}.{p}", 0)) for p in _bn_tensors(self.modules[bn])]
            result.axes[0] = targets
        return result

    def _folded_bn(self, scope: str, onnx_weight: np.ndarray) -> str | None | bool:
        """None when the torch weight equals the ONNX one; the BatchNorm whose folding explains the difference;
        False when nothing does."""
        if scope in self._bn_cache:
            return self._bn_cache[scope]
        conv = self.modules[scope]
        weight = conv.weight.detach().cpu().numpy()
        found: str | None | bool = False
        if np.array_equal(weight, onnx_weight) or np.allclose(weight, onnx_weight, rtol=1e-6, atol=0):
            found = None
        else:
            out_axis = 1 if conv.transposed else 0
            channels = weight.shape[out_axis]
            # the BatchNorm defined next after the conv first: fresh BNs of one width all fold alike
            order = list(self.modules.items())
            at = next((k for k, (m, _) in enumerate(order) if m == scope), 0)
            for bn_name, bn in order[at:] + order[:at]:
                if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.num_features != channels \
                        or bn.running_var is None:
                    continue
                scale = (bn.weight.detach() if bn.weight is not None else 1.0) / torch.sqrt(bn.running_var + bn.eps)
                shape = [1] * weight.ndim
                shape[out_axis] = channels
                folded = weight * scale.cpu().numpy().reshape(shape)
                if np.allclose(folded, onnx_weight, rtol=1e-4, atol=1e-6):
                    found = bn_name
                    break
        self._bn_cache[scope] = found
        return found

    def _recurrent(self, name: str, value: np.ndarray, node: gs.Node, index: int) -> Mapping | None:
        weight = self._value(node.inputs[1].name)  # [D, G*H, I]
        gates = _GATES[node.op]
        for scope in self._scope_modules(node) + [m for m, mod in self.modules.items() if isinstance(mod, nn.RNNBase)]:
            rnn = self.modules[scope]
            if not isinstance(rnn, nn.RNNBase):
                continue
            for layer in range(rnn.num_layers):
                suffixes = ["", "_reverse"] if rnn.bidirectional else [""]
                params = [f"{scope}.weight_ih_l{layer}{s}" for s in suffixes]
                if len(params) != weight.shape[0] or any(p not in self.tensors for p in params):
                    continue
                if all(_gate_equal(weight[d], self._torch(p), gates) for d, p in enumerate(params)):
                    return _recurrent_mapping(name, value, index, scope, layer, suffixes, gates, node.op)
        return None


def _bn_tensors(bn: nn.Module) -> list[str]:
    return [p for p in ("weight", "bias", "running_mean", "running_var") if getattr(bn, p, None) is not None]


def _gate_equal(onnx_weight: np.ndarray, torch_weight: np.ndarray, gates: tuple[int, ...]) -> bool:
    if onnx_weight.shape != torch_weight.shape or onnx_weight.shape[0] % len(gates):
        return False
    blocks = np.split(torch_weight, len(gates), axis=0)
    return np.allclose(np.concatenate([blocks[g] for g in gates], axis=0), onnx_weight, rtol=1e-6, atol=0)


def _recurrent_mapping(name: str, value: np.ndarray, index: int, scope: str, layer: int, suffixes: list[str],
                       gates: tuple[int, ...], op: str) -> Mapping:
    """W [D, G*H, I] -> weight_ih (rows by gate, columns), R [D, G*H, H] -> weight_hh, B [D, 2*G*H] -> bias_ih
    then bias_hh; every direction gets the same indices (the ONNX axes 1/2 are shared by the directions)."""
    hidden = value.shape[1] // len(gates) if index in (1, 2) else value.shape[1] // (2 * len(gates))
    rows = len(gates) * hidden
    result = Mapping(name, module=scope, how=f"{op} {'WRB'[index - 1]} of {scope} layer {layer}")
    if index in (1, 2):
        kind = "ih" if index == 1 else "hh"
        result.axes[1] = [(0, rows, Target(f"{scope}.weight_{kind}_l{layer}{s}", 0, gates=gates, gate_size=hidden))
                          for s in suffixes]
        result.axes[2] = [(0, value.shape[2], Target(f"{scope}.weight_{kind}_l{layer}{s}", 1)) for s in suffixes]
    else:
        result.axes[1] = [(lo, lo + rows, Target(f"{scope}.bias_{kind}_l{layer}{s}", 0, gates=gates,
                                                 gate_size=hidden))
                          for lo, kind in ((0, "ih"), (rows, "hh")) for s in suffixes]
    return result


def match_value(value: np.ndarray, param: np.ndarray, whole: bool = False) -> dict[int, tuple[int, int]] | None:
    """{ONNX axis: (torch axis, index offset)} when ``value`` equals ``param`` up to size-1 axes, a 2-D transpose,
    or (unless ``whole``) a contiguous slice along one axis of ``param``; None otherwise. Only axes longer than 1
    are mapped."""
    v_axes = [a for a in range(value.ndim) if value.shape[a] != 1]
    p_axes = [a for a in range(param.ndim) if param.shape[a] != 1]
    if len(v_axes) != len(p_axes) or value.dtype.kind != param.dtype.kind:
        return None
    v = value.reshape([value.shape[a] for a in v_axes])
    p = param.reshape([param.shape[a] for a in p_axes])
    orders = [list(range(p.ndim))]
    if p.ndim == 2:
        orders.append([1, 0])
    for order in orders:
        moved = np.transpose(p, order)
        if moved.shape == v.shape:
            if np.array_equal(moved, v):
                return {v_axes[k]: (p_axes[order[k]], 0) for k in range(v.ndim)}
            continue
        diff = [k for k in range(v.ndim) if moved.shape[k] != v.shape[k]]
        if whole or len(diff) != 1 or moved.shape[diff[0]] < v.shape[diff[0]]:
            continue
        k = diff[0]
        size = v.shape[k]
        first = np.take(v, [0], axis=k)
        for offset in range(moved.shape[k] - size + 1):
            if np.array_equal(np.take(moved, [offset], axis=k), first) and \
                    np.array_equal(np.take(moved, range(offset, offset + size), axis=k), v):
                return {v_axes[j]: (p_axes[order[j]], offset if j == k else 0) for j in range(v.ndim)}
    return None

