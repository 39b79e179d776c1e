"""Slice a torch module's parameters and buffers in place the way an ONNX plan sliced the initializers, and update
the attributes that hold sizes (``out_channels``, ``num_features``, ``hidden_size``, ``num_heads``, ...) so the
module runs and exports again."""

from __future__ import annotations

import os
from collections.abc import Mapping as MappingType
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs
import torch
from torch import nn

from onnxprune.analysis import DependencyGraph, analyse_model
from onnxprune.axes import ChannelAxis
from onnxprune.selection import Plan, read_plan_json
from onnxprune.torch.attention import PrunedMultiheadAttention, convert
from onnxprune.torch.companions import follow_constants
from onnxprune.torch.custom import custom_size_changes
from onnxprune.torch.mapping import Locator, Mapping, TorchMappingError

# Attribute names of attention modules (ours, transformers') holding head counts, head sizes and their products,
# with the names of the child projection whose output rows are heads x head_dim.
_HEADS = ("num_heads", "num_attention_heads", "n_head", "heads")
_KV_HEADS = ("num_kv_heads", "num_key_value_heads")
_HEAD_DIM = ("head_dim", "attention_head_size")
_Q = ("q", "q_proj", "query", "to_q")  # to_*: diffusers' Attention
_K = ("k", "k_proj", "key", "to_k")
_V = ("v", "v_proj", "value", "to_v")


@dataclass
class TorchPruneResult:
    """What ``apply_plan`` did to the torch module: ``sliced`` {tensor: (old shape, new shape)}, ``mappings``
    (how each pruned initializer was found), ``attributes`` {module: {attribute: (old, new)}}, ``skipped``
    (initializers torch does not hold: exporter-made constants), ``followed`` {torch tensor of one repeated value
    the exporter wrote no initializer for: tensor whose cut it followed} (companions.py)."""

    sliced: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    mappings: list[Mapping] = field(default_factory=list)
    attributes: dict[str, dict[str, tuple]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    followed: dict[str, str] = field(default_factory=dict)

    @property
    def folded_bn(self) -> dict[str, str]:
        """{conv module: BatchNorm module folded into it by the exporter}."""
        return {m.module: m.folded_bn for m in self.mappings if m.folded_bn}

    def summary(self) -> str:
        """Human-readable lines: one per sliced tensor and per changed attribute."""
        lines = [f"{name}: {old} -> {new}" for name, (old, new) in sorted(self.sliced.items())]
        for module, attrs in sorted(self.attributes.items()):
            lines += [f"{module or '<root>'}.{attr}: {a} -> {b}" for attr, (a, b) in sorted(attrs.items())]
        lines += [f"BatchNorm {bn} was folded into {conv}: sliced with it" for conv, bn in self.folded_bn.items()]
        lines += [f"{name}: exporter constant, nothing to slice" for name in self.skipped]
        lines += [f"{name}: one repeated value, not in the ONNX model: cut as {lead}"
                  for name, lead in sorted(self.followed.items())]
        return "\n".join(lines)


def apply_removed(module: nn.Module, dg: DependencyGraph, removed: MappingType[ChannelAxis, np.ndarray] |
                  MappingType[str, MappingType[int, np.ndarray]]) -> TorchPruneResult:
    """Slice ``module`` in place: ``dg`` is the analysis of the ONNX model exported from it, ``removed`` the
    removed indices per axis (``dg.resolve(plan.groups)``: {ChannelAxis: indices}, activations ignored) or per
    initializer ({name: {axis: indices}}). TorchMappingError names an initializer that matches nothing."""
    per_init: dict[str, dict[int, np.ndarray]] = {}
    for key, value in removed.items():
        if isinstance(key, ChannelAxis):
            if isinstance(dg.tensors.get(key.tensor), gs.Constant) and len(value):
                per_init.setdefault(key.tensor, {})[key.axis] = np.asarray(value, dtype=np.int64)
        else:
            for axis, idx in value.items():
                if len(idx):
                    per_init.setdefault(key, {})[int(axis)] = np.asarray(idx, dtype=np.int64)
    locator = Locator(module, dg)
    result = TorchPruneResult()
    cuts: dict[str, dict[int, np.ndarray]] = {}
    origin: dict[tuple[str, int], str] = {}
    hints: dict[str, int] = {}
    for name in sorted(per_init):
        axes = per_init[name]
        if name not in dg.tensors or not isinstance(dg.tensors[name], gs.Constant):
            raise TorchMappingError(f"'{name}' is not an initializer of the analysed model")
        mapping = locator.locate(name, sorted(axes))
        result.mappings.append(mapping)
        if mapping.exporter_constant:
            result.skipped.append(name)
            shape = dg.tensors[name].shape
            if mapping.module is not None and len(axes) == 1:
                (axis, idx), = axes.items()
                hints[mapping.module] = int(shape[axis]) - len(idx)
            continue
        for axis, idx in axes.items():
            if axis not in mapping.axes:
                raise TorchMappingError(f"initializer '{name}' is pruned on axis {axis}, which its torch "
                                        f"counterpart ({mapping.how}) does not have")
            for lo, hi, target in mapping.axes[axis]:
                part = target.index(idx[(idx >= lo) & (idx < hi)] - lo)
                key = (target.name, target.axis)
                previous = cuts.setdefault(target.name, {}).get(target.axis)
                if previous is not None and not np.array_equal(previous, np.unique(part)):
                    raise TorchMappingError(f"torch tensor {target.name} axis {target.axis}: initializer '{name}' "
                                            f"removes {np.unique(part).tolist()}, '{origin[key]}' removed "
                                            f"{previous.tolist()}; the plan does not map onto one torch tensor")
                cuts[target.name][target.axis] = np.unique(part)
                origin[key] = name
    result.followed = follow_constants(module, cuts)
    before = {name: _snapshot(m) for name, m in module.named_modules()}
    saved = [(m, m.__class__, dict(m.__dict__), dict(m._parameters), dict(m._buffers)) for m in module.modules()]
    try:
        _slice(module, cuts, result)
        _fix_attributes(module, cuts, before, hints, result)
        modules = dict(module.named_modules())
        for name, changes in custom_size_changes(module, cuts, result.sliced).items():
            for attribute, (_, new) in changes.items():
                _set(result, name, modules[name], attribute, new)
        _check_consistent(module, cuts)
    except Exception:  # leave the module as it was: no half-pruned model
        for m, cls, state, params, buffers in saved:
            m.__class__ = cls
            m.__dict__.clear()
            m.__dict__.update(state)
            m._parameters.clear()
            m._parameters.update(params)
            m._buffers.clear()
            m._buffers.update(buffers)
        raise
    return result


def apply_plan(module: nn.Module, plan, model_path: str | os.PathLike | None = None) -> TorchPruneResult:
    """Slice ``module`` (the torch module the ONNX model was exported from) in place as ``plan`` pruned the ONNX
    model. ``plan``: a :class:`Plan` bound to its analysis (``plan.depgraph``), or a plan JSON (path or dict)
    together with ``model_path``, the original ONNX model it was made from (analysed again with the plan's
    settings). Returns what was sliced; see :func:`apply_removed`."""
    if isinstance(plan, Plan):
        dg = plan.depgraph
        if dg is None:
            if model_path is None:
                raise TorchMappingError("the plan is not bound to an analysis: pass model_path, the original model")
            dg = analyse_model(os.fspath(model_path))
        return apply_removed(module, dg, dg.resolve(plan.groups))
    data = read_plan_json(plan)
    if model_path is None:
        raise TorchMappingError("a plan JSON needs model_path: the original ONNX model the plan was made from")
    dg = Plan.settings_of(data).analyse(os.fspath(model_path))
    removed = {}
    for name, entry in data.get("initializers", {}).items():
        shape = entry["shape"]
        removed[name] = {int(a): np.setdiff1d(np.arange(shape[int(a)]), np.asarray(kept, dtype=np.int64))
                         for a, kept in entry["kept"].items()}
    return apply_removed(module, dg, removed)


# ---------------------------------------------------------------------------------------------------- slicing
def _slice(module: nn.Module, cuts: dict[str, dict[int, np.ndarray]], result: TorchPruneResult) -> None:
    """Replace every cut tensor by its kept part, everywhere it is registered (tied weights stay tied)."""
    owners: dict[int, list[tuple[nn.Module, str, bool]]] = {}
    named: dict[str, torch.Tensor] = {}
    for mname, sub in module.named_modules(remove_duplicate=False):
        for attr, t in list(sub._parameters.items()) + list(sub._buffers.items()):
            if t is None:
                continue
            owners.setdefault(id(t), []).append((sub, attr, attr in sub._parameters))
            named.setdefault(f"{mname}.{attr}" if mname else attr, t)
    for name, axes in cuts.items():
        tensor = named[name]
        with torch.no_grad():
            new = tensor.detach()
            for axis, idx in sorted(axes.items()):
                keep = np.setdiff1d(np.arange(new.shape[axis]), idx)
                new = new.index_select(axis, torch.as_tensor(keep, dtype=torch.long, device=new.device))
            new = new.clone().contiguous()
        replacement = nn.Parameter(new, requires_grad=tensor.requires_grad) if isinstance(tensor, nn.Parameter) \
            else new
        for sub, attr, is_param in owners[id(tensor)]:
            (sub._parameters if is_param else sub._buffers)[attr] = replacement
        result.sliced[name] = (list(tensor.shape), list(new.shape))


# ---------------------------------------------------------------------------------------------------- attributes
def _snapshot(m: nn.Module) -> dict:
    keys = ("in_channels", "out_channels", "groups", "num_features", "num_channels", "num_groups", "in_features",
            "out_features", "normalized_shape", "num_embeddings", "embedding_dim", "hidden_size", "input_size",
            "num_parameters", "embed_dim", "kdim", "vdim", "all_head_size", "split_size", "nf")
    keys += _HEADS + _KV_HEADS + _HEAD_DIM
    return {k: getattr(m, k) for k in keys if isinstance(getattr(m, k, None), (int, tuple))}


def _set(result: TorchPruneResult, name: str, m: nn.Module, attr: str, value) -> None:
    old = getattr(m, attr)
    if old != value:
        setattr(m, attr, value)
        result.attributes.setdefault(name, {})[attr] = (old, value)


def _kept_blocks(size: int, block: int, removed: np.ndarray | None) -> int:
    """How many blocks of ``block`` consecutive indices out of ``size`` keep at least one index."""
    kept = np.setdiff1d(np.arange(size), removed if removed is not None else [])
    return len(np.unique(kept // block))


def _fix_attributes(module: nn.Module, cuts: dict[str, dict[int, np.ndarray]], before: dict[str, dict],
                    hints: dict[str, int], result: TorchPruneResult) -> None:
    touched = {name.rpartition(".")[0] for name in cuts} | set(hints)
    modules = dict(module.named_modules())
    for name in sorted(touched):
        m, old = modules.get(name), before.get(name, {})
        if m is None:
            continue
        cut = {attr: cuts.get(f"{name}.{attr}" if name else attr, {}) for attr in ("weight", "weight_ih_l0")}
        if isinstance(m, nn.modules.conv._ConvNd):
            w = m.weight
            if m.transposed:
                groups = _kept_blocks(old["in_channels"], old["in_channels"] // old["groups"], cut["weight"].get(0))
                _set(result, name, m, "groups", groups)
                _set(result, name, m, "in_channels", w.shape[0])
                _set(result, name, m, "out_channels", w.shape[1] * groups)
            else:
                groups = _kept_blocks(old["out_channels"], old["out_channels"] // old["groups"],
                                      cut["weight"].get(0))
                _set(result, name, m, "groups", groups)
                _set(result, name, m, "out_channels", w.shape[0])
                _set(result, name, m, "in_channels", w.shape[1] * groups)
        elif isinstance(m, nn.Linear):
            _set(result, name, m, "out_features", m.weight.shape[0])
            _set(result, name, m, "in_features", m.weight.shape[1])
        elif isinstance(m, (nn.modules.batchnorm._NormBase)):
            size = _first_size(m, ("weight", "running_mean")) or hints.get(name)
            if size is not None:
                _set(result, name, m, "num_features", size)
        elif isinstance(m, nn.GroupNorm):
            size = _first_size(m, ("weight",)) or hints.get(name)
            if size is not None:
                groups = _kept_blocks(old["num_channels"], old["num_channels"] // old["num_groups"],
                                      cut["weight"].get(0))
                _set(result, name, m, "num_groups", groups)
                _set(result, name, m, "num_channels", size)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                _set(result, name, m, "normalized_shape", tuple(m.weight.shape))
            elif name in hints:
                _set(result, name, m, "normalized_shape", (*m.normalized_shape[:-1], hints[name]))
        elif isinstance(m, nn.Embedding):
            _set(result, name, m, "num_embeddings", m.weight.shape[0])
            _set(result, name, m, "embedding_dim", m.weight.shape[1])
        elif isinstance(m, nn.PReLU):
            _set(result, name, m, "num_parameters", m.weight.numel())
        elif isinstance(m, nn.RNNBase):
            _fix_rnn(name, m, result)
        elif isinstance(getattr(m, "nf", None), int) and getattr(m, "weight", None) is not None:
            _set(result, name, m, "nf", int(m.weight.shape[1]))  # transformers' Conv1D: weight [in, out]
    rotary = next((n for n, m in modules.items() if isinstance(getattr(m, "inv_freq", None), torch.Tensor)
                   and f"{n}.inv_freq" not in cuts), None)  # rotary tables not sliced with the heads
    for name, m in modules.items():
        _fix_heads(name, m, cuts, before.get(name, {}), result, rotary)
        if isinstance(m, nn.MultiheadAttention) and any(c.startswith(f"{name}.") or not name for c in cuts):
            _fix_mha(name, m, cuts, result)
    for name, m in modules.items():
        if isinstance(m, nn.TransformerEncoderLayer) and isinstance(m.self_attn, PrunedMultiheadAttention):
            # torch's fused encoder-layer kernel (eval, batch_first, no grad) reads the attention sizes from
            # embed_dim/num_heads and skips PrunedMultiheadAttention.forward; this flag is the fast path's own
            # switch (the layer's function reads self.activation), so clearing it keeps the layer on its modules.
            _set(result, name, m, "activation_relu_or_gelu", 0)


def _fix_mha(name: str, m: nn.MultiheadAttention, cuts: dict, result: TorchPruneResult) -> None:
    prefix = f"{name}." if name else ""
    size = m.embed_dim
    if m._qkv_same_embed_dim:
        rows = cuts.get(f"{prefix}in_proj_weight", {}).get(0, np.zeros(0, dtype=np.int64))
        parts = [rows[(rows >= k * size) & (rows < (k + 1) * size)] - k * size for k in range(3)]
    else:
        parts = [cuts.get(f"{prefix}{p}_proj_weight", {}).get(0, np.zeros(0, dtype=np.int64)) for p in "qkv"]
    try:
        changes = convert(m, *parts)
    except ValueError as exc:
        raise TorchMappingError(f"{name}: {exc}") from None
    result.attributes.setdefault(name, {}).update(changes)


def _first_size(m: nn.Module, attrs: tuple[str, ...]) -> int | None:
    for attr in attrs:
        t = getattr(m, attr, None)
        if isinstance(t, torch.Tensor):
            return int(t.shape[0])
    return None


def _fix_rnn(name: str, m: nn.RNNBase, result: TorchPruneResult) -> None:
    if getattr(m, "proj_size", 0):
        raise TorchMappingError(f"{name}: LSTM with proj_size is not supported")
    hidden = {int(getattr(m, f"weight_hh_l{k}").shape[1]) for k in range(m.num_layers)}
    if len(hidden) != 1:
        raise TorchMappingError(f"{name}: the plan gives the {m.num_layers} layers of this {type(m).__name__} "
                                f"hidden sizes {sorted(hidden)}, but torch's {type(m).__name__} has one hidden_size "
                                "for all layers: prune every layer by the same count (or split the module into "
                                "one module per layer before exporting)")
    _set(result, name, m, "hidden_size", hidden.pop())
    _set(result, name, m, "input_size", int(m.weight_ih_l0.shape[1]))
    m._init_flat_weights()


def _attr(m: nn.Module, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if isinstance(getattr(m, n, None), int)), None)


def _fix_heads(name: str, m: nn.Module, cuts: dict, old: dict, result: TorchPruneResult, rotary: str | None) -> None:
    """Attention modules: head counts and head sizes from the rows their q/k projections lost (whole heads removed:
    fewer heads; the same positions in every head: smaller heads)."""
    heads, head_dim = _attr(m, _HEADS), _attr(m, _HEAD_DIM)
    if head_dim is None and heads is None:
        return
    for attrs, children in ((_HEADS, _Q), (_KV_HEADS, _K)):
        count = _attr(m, attrs)
        child = next((c for c in children if isinstance(getattr(m, c, None), nn.Linear)), None)
        prefix = f"{name}." if name else ""
        if child is not None:
            rows = cuts.get(f"{prefix}{child}.weight", {}).get(0)
        elif attrs is _HEADS and isinstance(old.get("split_size"), int) and hasattr(m, "c_attn"):
            child = "c_attn"  # transformers' GPT-2: packed q|k|v Conv1D, weight [in, 3 * split_size]
            packed = cuts.get(f"{prefix}c_attn.weight", {}).get(1)
            rows = packed[packed < old["split_size"]] if packed is not None else None
        else:
            continue
        if rows is None or not len(rows):
            continue
        total = old["split_size"] if child == "c_attn" else result.sliced[f"{prefix}{child}.weight"][0][0]
        if head_dim is None and count is None:
            continue
        size = old[head_dim] if head_dim is not None else total // old[count]  # a module that views c // heads
        per_head = np.bincount(rows // size, minlength=total // size)
        if np.all((per_head == 0) | (per_head == size)):
            if count is not None:  # else the module reshapes with -1 heads (transformers' LLaMA)
                _set(result, name, m, count, old[count] - int(np.sum(per_head == size)))
        elif np.all(per_head == per_head[0]):
            v_child = next((c for c in _V if isinstance(getattr(m, c, None), nn.Linear)), None)
            v_rows = cuts.get(f"{prefix}{v_child}.weight", {}).get(0) if v_child else None
            if child == "c_attn":
                v_child, v_rows = "c_attn (its v part)", packed[packed >= 2 * old["split_size"]]
            v_total = old["split_size"] if child == "c_attn" else \
                result.sliced.get(f"{prefix}{v_child}.weight", ([size],))[0][0] if v_child else size
            v_count = len(v_rows) * size // v_total if v_rows is not None else 0
            if v_child is not None and v_count != int(per_head[0]):
                raise TorchMappingError(f"{name}: the plan removes {int(per_head[0])} positions within every head of "
                                        f"{child} but {v_count} of {v_child}; {type(m).__name__} has one head "
                                        f"size ({head_dim}) for q, k and v, so it cannot hold this plan (prune whole "
                                        "heads: analyse with factor_policy='leading' and select with heads_ratio)")
            if not isinstance(getattr(m, "scaling", getattr(m, "scale", None)), float):
                raise TorchMappingError(f"{name}: the plan removes {int(per_head[0])} positions within every head, "
                                        f"but {type(m).__name__} keeps no softmax scale attribute ('scaling' or "
                                        "'scale'): if it computes 1/sqrt(head_dim) at run time, the smaller heads "
                                        "change its function (the ONNX graph keeps the original scale); prune whole "
                                        "heads (factor_policy='leading', heads_ratio) or give it a fixed scale")
            if rotary:
                raise TorchMappingError(f"{name}: the plan removes {int(per_head[0])} positions within every head, "
                                        f"but the module has rotary embeddings ({rotary} holds inv_freq), whose "
                                        "tables torch computes from head_dim at run time; prune whole heads "
                                        "(factor_policy='leading', heads_ratio)")
            if head_dim is None:
                raise TorchMappingError(f"{name}: the plan removes {int(per_head[0])} positions within every head, "
                                        f"but {type(m).__name__} keeps no head size attribute (it derives it from "
                                        "a width at run time); prune whole heads (factor_policy='leading', "
                                        "heads_ratio)")
            _set(result, name, m, head_dim, size - int(per_head[0]))
        else:
            raise TorchMappingError(f"{name}.{child}: the plan removes {per_head.tolist()} rows per head; torch "
                                    "attention needs whole heads or the same count in every head")
    if heads is not None and isinstance(old.get("split_size"), int) and hasattr(m, "c_attn"):
        _set(result, name, m, "split_size", getattr(m, heads) * getattr(m, head_dim))
    if heads is None:
        return
    if isinstance(getattr(m, "all_head_size", None), int):
        _set(result, name, m, "all_head_size", getattr(m, heads) * getattr(m, head_dim))
    kv = _attr(m, _KV_HEADS)
    if kv is not None and isinstance(getattr(m, "num_key_value_groups", None), int):
        _set(result, name, m, "num_key_value_groups", getattr(m, heads) // getattr(m, kv))


def _check_consistent(module: nn.Module, cuts: dict) -> None:
    """Every per-output-channel tensor of a sliced Conv/Linear/norm module has the width of its weight; a tensor the
    plan did not reach (an exporter merged it with another equal constant) is an error naming it."""
    touched = {name.rpartition(".")[0] for name in cuts}
    for name, m in module.named_modules():
        if name not in touched:
            continue
        weight = getattr(m, "weight", None)
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and m.bias is not None:
            out = weight.shape[1] * m.groups if getattr(m, "transposed", False) else weight.shape[0]
            pairs = [("bias", m.bias.shape[0], out)]
        elif isinstance(m, nn.modules.batchnorm._NormBase):
            pairs = [(p, getattr(m, p).shape[0], m.num_features) for p in ("weight", "bias", "running_mean",
                                                                           "running_var")
                     if isinstance(getattr(m, p, None), torch.Tensor)]
        elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)) and m.bias is not None and weight is not None:
            pairs = [("bias", m.bias.shape[0], weight.shape[0])]
        else:
            continue
        for attr, got, want in pairs:
            if got != want:
                raise TorchMappingError(f"{name}.{attr} has {got} entries but the module now has {want} channels: "
                                        "the plan did not reach it (was it merged with an equal constant by the "
                                        "exporter? give such parameters distinct values before exporting)")
