"""Per-channel tensors the plan cannot reach because the exporter wrote no initializer for them.

An exporter drops a tensor that holds one repeated value when it does not change the function: the dynamo
exporter's optimizer removes the zero bias of a Gemm (``nn.MultiheadAttention``'s ``out_proj.bias`` is zeros until
trained). The torch module still holds it, one entry per output channel of its weight; since every entry is equal,
which ones go does not matter, only how many: it follows the cut of the tensor it belongs with. A tensor with
differing values is never guessed (``_check_consistent`` in prune.py names it).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# (tensor the plan reached, its channel axis, companion tensor) per module type; the companion's channel axis is 0.
_LINEAR = (("weight", 0, "bias"),)
_NORM = tuple((a, 0, b) for a in ("weight", "bias", "running_mean", "running_var")
              for b in ("weight", "bias", "running_mean", "running_var") if a != b)


def _pairs(m: nn.Module) -> tuple[tuple[str, int, str], ...]:
    if isinstance(m, nn.Linear):
        return _LINEAR
    if isinstance(m, nn.modules.conv._ConvNd):
        if not m.transposed:
            return _LINEAR
        return (("weight", 1, "bias"),) if m.groups == 1 else ()
    if isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
        return _NORM
    if isinstance(m, nn.MultiheadAttention):
        return (("in_proj_weight", 0, "in_proj_bias"),)
    return ()


def _constant(t: torch.Tensor) -> bool:
    return t.numel() > 0 and bool(torch.all(t == t.reshape(-1)[0]))


def follow_constants(module: nn.Module, cuts: dict[str, dict[int, np.ndarray]]) -> dict[str, str]:
    """Add to ``cuts`` the constant companions of cut tensors that the plan did not reach (a bias the exporter
    dropped); returns {companion: tensor whose cut it follows}."""
    followed: dict[str, str] = {}
    for name, m in module.named_modules():
        prefix = f"{name}." if name else ""
        for lead, axis, companion in _pairs(m):
            cut = cuts.get(prefix + lead, {}).get(axis)
            tensor = getattr(m, companion, None)
            if cut is None or not isinstance(tensor, torch.Tensor) or tensor.ndim != 1 \
                    or 0 in cuts.get(prefix + companion, {}) or not _constant(tensor):
                continue
            cuts.setdefault(prefix + companion, {})[0] = cut
            followed[prefix + companion] = prefix + lead
    return followed
