"""``nn.MultiheadAttention`` after pruning.

torch's own module ties four widths to one ``embed_dim``: its input (the model width), q/k (heads x head size), v,
and its output. ONNX pruning changes them independently (the hidden group, the head groups, the output group), and
removing positions within heads leaves the softmax scale at the original 1/sqrt(head_dim), a constant in the ONNX
graph. :class:`PrunedMultiheadAttention` is the same module (same parameters, names and call signature: apply_plan
switches the instance's class in place) with a forward that takes each width from its own parameter."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class PrunedMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose q/k width (``num_heads * head_dim``), v width (``num_heads * v_head_dim``),
    input width and output width may differ; ``scale`` is the softmax scale the original module used. Supports
    ``key_padding_mask``, ``attn_mask`` (bool or float), ``is_causal``, ``need_weights``; not ``add_bias_kv``,
    ``add_zero_attn`` or dropout in training."""

    head_dim: int
    v_head_dim: int
    scale: float

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        """Same arguments and results as ``nn.MultiheadAttention.forward``."""
        batched = query.dim() == 3
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        if self.batch_first:  # to [N, T, E]
            q_in, k_in, v_in = query, key, value
        else:
            q_in, k_in, v_in = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        qk, v_width = self.num_heads * self.head_dim, self.num_heads * self.v_head_dim
        if self._qkv_same_embed_dim:
            w_q, w_k, w_v = self.in_proj_weight.split([qk, qk, v_width], 0)
        else:
            w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        b_q = b_k = b_v = None
        if self.in_proj_bias is not None:
            b_q, b_k, b_v = self.in_proj_bias.split([qk, qk, v_width], 0)
        n, t, s = q_in.shape[0], q_in.shape[1], k_in.shape[1]
        q = F.linear(q_in, w_q, b_q).view(n, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = F.linear(k_in, w_k, b_k).view(n, s, self.num_heads, self.head_dim).transpose(1, 2)
        v = F.linear(v_in, w_v, b_v).view(n, s, self.num_heads, self.v_head_dim).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        if is_causal and attn_mask is None:
            attn_mask = torch.triu(torch.ones(t, s, dtype=torch.bool, device=q.device), diagonal=1)
        if attn_mask is not None:
            mask = attn_mask.view(n, self.num_heads, t, s) if attn_mask.dim() == 3 else attn_mask
            scores = scores.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        if key_padding_mask is not None:
            pad = key_padding_mask[:, None, None, :]
            scores = scores.masked_fill(pad, float("-inf")) if pad.dtype == torch.bool else scores + pad
        weights = scores.softmax(-1)
        if self.training and self.dropout > 0:
            weights = F.dropout(weights, self.dropout)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(n, t, v_width)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not batched:
            out = out.squeeze(1)
        if not need_weights:
            return out, None
        return out, (weights.mean(1) if average_attn_weights else weights)


def convert(m: nn.MultiheadAttention, q_rows: np.ndarray, k_rows: np.ndarray, v_rows: np.ndarray) -> dict:
    """Switch ``m`` (already sliced) to :class:`PrunedMultiheadAttention`, given the rows its q, k and v parts
    lost (indices within each part, before slicing); returns {attribute: (old, new)} of what changed."""
    if m.bias_k is not None or m.add_zero_attn:
        raise ValueError("nn.MultiheadAttention with add_bias_kv or add_zero_attn is not supported")
    old_heads, old_dim = m.num_heads, m.embed_dim // m.num_heads
    heads, head_dim, v_head_dim = old_heads, old_dim, old_dim
    for rows, which in ((q_rows, "q"), (k_rows, "k"), (v_rows, "v")):
        per_head = np.bincount(np.asarray(rows, dtype=np.int64) // old_dim, minlength=old_heads)
        if not per_head.any():
            continue
        if np.all((per_head == 0) | (per_head == old_dim)):
            count = old_heads - int(np.sum(per_head == old_dim))
            if heads not in (old_heads, count):
                raise ValueError(f"the {which} part loses other heads than the others")
            heads = count
        elif np.all(per_head == per_head[0]):
            if which == "v":
                v_head_dim = old_dim - int(per_head[0])
            else:
                head_dim = old_dim - int(per_head[0])
        else:
            raise ValueError(f"the plan removes {per_head.tolist()} rows per head from the {which} projection: "
                             "attention needs whole heads or the same count in every head")
    changes = {}
    scale = getattr(m, "scale", 1.0 / math.sqrt(old_dim))
    for attr, value in (("num_heads", heads), ("head_dim", head_dim), ("v_head_dim", v_head_dim),
                        ("embed_dim", int(m.out_proj.weight.shape[0])), ("scale", scale)):
        old = getattr(m, attr, None)
        if old != value:
            changes[attr] = (old, value)
        setattr(m, attr, value)
    if m._qkv_same_embed_dim:
        changes["kdim"], changes["vdim"] = (m.kdim, m.in_proj_weight.shape[1]), (m.vdim, m.in_proj_weight.shape[1])
        m.kdim = m.vdim = int(m.in_proj_weight.shape[1])
    m.__class__ = PrunedMultiheadAttention
    return changes
