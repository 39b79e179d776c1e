"""onnxruntime's fused attention ops (com.microsoft): GroupQueryAttention, MultiHeadAttention, Attention (packed
QKV weights), and RotaryEmbedding. Heads are the unit: head size stays (rotary caches and ``scale`` are per head
dimension), so pruning removes whole heads and the node's ``num_heads`` / ``kv_num_heads`` are rewritten.

GroupQueryAttention: query head q reads KV head q // (num_heads / kv_num_heads), so one unit is a whole KV group
(its KV head and the query heads that read it); removing it keeps the grouping valid. Query heads inside a group
are not pruned on their own. The KV cache (past_key/past_value inputs [B, kv, P, H], present outputs) follows the
KV heads: as graph inputs/outputs those axes are protected unless allowed (``--allow-cache-io``).

All of these are mask-exact: a removed head's query, key and value channels (or its output) are zero in the mask
oracle, and every kept head computes what it did.
"""

from __future__ import annotations

import numpy as np

from onnxprune.handlers import AnalysisContext, OpHandler, RewriteContext, ShapeView, register


def _heads(ctx: AnalysisContext, anchor, tensor, axis: int, offset: int, units: np.ndarray, per_unit: int,
           head_size: int) -> None:
    """Couple channels ``offset + (unit * per_unit + r) * head_size + d`` of ``tensor``'s ``axis`` with the anchor
    index of each unit (r < per_unit, d < head_size): every channel of a unit's heads goes with it."""
    u, r, d = np.meshgrid(units, np.arange(per_unit), np.arange(head_size), indexing="ij")
    idx = (offset + (u * per_unit + r) * head_size + d).reshape(-1)
    ctx.couple(ctx.axis(tensor, axis), anchor[0], idx, anchor[1][u.reshape(-1)])


def _cache(ctx: AnalysisContext, anchor, tensors, axis: int, units: np.ndarray) -> None:
    """Couple the head axis of KV-cache tensors ([B, heads, T, H], or [2, B, heads, T, H] for Attention's past)."""
    for tensor in tensors:
        if tensor is not None and tensor.name and ctx.rank(tensor) > axis:
            ctx.couple(ctx.axis(tensor, axis), anchor[0], units, anchor[1][units])
            ctx.nonchannel_tensor(tensor, [a for a in range(ctx.rank(tensor)) if a != axis])


@register("GroupQueryAttention", domain="com.microsoft")
class GroupQueryAttentionHandler(OpHandler):
    """output[B, S, N*H], present_key/value[B, kv, T, H] = GQA(query, key, value, past_key, past_value, seqlens_k,
    total_sequence_length, cos_cache, sin_cache, ...); query is packed [B, S, (N + 2 kv) * H] when key and value
    are absent."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        query, key, value, out = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
        heads, kv = int(ctx.attr("num_heads")), int(ctx.attr("kv_num_heads"))
        width = ctx.size(query, 2)
        packed = key is None
        if width is None or ctx.rank(query) != 3 or (not packed and (value is None or ctx.rank(key) != 3)):
            ctx.block_all(f"{node.op} needs 3-D query/key/value with a static hidden width")
            return
        head_size = width // (heads + 2 * kv) if packed else width // heads
        rep = heads // kv
        units = np.arange(kv)
        anchor = (ctx.axis(query, 2), units * rep * head_size)
        _heads(ctx, anchor, query, 2, 0, units, rep, head_size)
        _heads(ctx, anchor, out, 2, 0, units, rep, head_size)
        if packed:
            _heads(ctx, anchor, query, 2, heads * head_size, units, 1, head_size)
            _heads(ctx, anchor, query, 2, (heads + kv) * head_size, units, 1, head_size)
        else:
            _heads(ctx, anchor, key, 2, 0, units, 1, head_size)
            _heads(ctx, anchor, value, 2, 0, units, 1, head_size)
        _cache(ctx, anchor, [ctx.input(3), ctx.input(4), ctx.output(1), ctx.output(2)], 1, units)
        for tensor in [t for t in (query, key, value, out) if t is not None]:
            ctx.nonchannel_tensor(tensor, [0, 1])
            ctx.label(ctx.axis(tensor, 2), "heads")

    def rewrite(self, node, ctx: RewriteContext) -> None:
        heads, kv = int(ctx.attr("num_heads")), int(ctx.attr("kv_num_heads"))
        out = ctx.output(0)
        new_heads = heads * ctx.new_size(out, 2) // ctx.old_size(out, 2)
        ctx.set_attr("num_heads", new_heads)
        ctx.set_attr("kv_num_heads", new_heads // (heads // kv))

    def macs(self, node, ctx: ShapeView) -> int:
        return 0  # the projections are MatMuls before and after; scores depend on the dynamic sequence length


@register("MultiHeadAttention", domain="com.microsoft")
class MultiHeadAttentionHandler(OpHandler):
    """output[B, S, N*Hv] = MHA(query[B, S, N*H], key[B, L, N*H], value[B, L, N*Hv], bias[N*(2H + Hv)], ...,
    past_key, past_value [B, N, P, H]); present_key/value [B, N, T, H]. Packed or 4-D key/value are not
    supported (blocked)."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        query, key, value, bias, out = ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3), ctx.output(0)
        heads = int(ctx.attr("num_heads"))
        if any(t is None or ctx.rank(t) != 3 or ctx.size(t, 2) is None for t in (query, key, value)):
            ctx.block_all(f"{node.op} with packed or 4-D key/value is not supported")
            return
        qk, v = ctx.size(query, 2) // heads, ctx.size(value, 2) // heads
        units = np.arange(heads)
        anchor = (ctx.axis(query, 2), units * qk)
        for tensor, size in ((query, qk), (key, qk), (value, v), (out, v)):
            _heads(ctx, anchor, tensor, 2, 0, units, 1, size)
            ctx.nonchannel_tensor(tensor, [0, 1])
            ctx.label(ctx.axis(tensor, 2), "heads")
        if bias is not None:
            for offset, size in ((0, qk), (heads * qk, qk), (2 * heads * qk, v)):
                _heads(ctx, anchor, bias, 0, offset, units, 1, size)
        _cache(ctx, anchor, [ctx.input(6), ctx.input(7), ctx.output(1), ctx.output(2)], 1, units)

    def rewrite(self, node, ctx: RewriteContext) -> None:
        out = ctx.output(0)
        ctx.set_attr("num_heads", int(ctx.attr("num_heads")) * ctx.new_size(out, 2) // ctx.old_size(out, 2))


@register("Attention", domain="com.microsoft")
class AttentionHandler(OpHandler):
    """output[B, S, N*H] = Attention(input[B, S, D], weights[D, 3*N*H], bias[3*N*H], mask_index, past[2, B, N, P,
    H], attention_bias); present [2, B, N, T, H]. Q, K, V columns are consecutive blocks of the packed weights
    (``qkv_hidden_sizes`` with three different sizes is not supported)."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, w, bias, out = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
        heads = int(ctx.attr("num_heads"))
        sizes = list(ctx.attr("qkv_hidden_sizes", []) or [])
        if len(set(sizes)) > 1 or not ctx.is_constant(w) or ctx.size(w, 1) is None:
            ctx.block_all(f"{node.op} needs constant packed weights with equal Q, K, V widths")
            return
        hidden = ctx.size(w, 1) // 3
        head_size = hidden // heads
        units = np.arange(heads)
        anchor = (ctx.axis(w, 1), units * head_size)
        ctx.identity(ctx.axis(x, 2), ctx.axis(w, 0))
        ctx.producer(ctx.axis(w, 1))
        for offset in (0, hidden, 2 * hidden):
            _heads(ctx, anchor, w, 1, offset, units, 1, head_size)
            if bias is not None:
                _heads(ctx, anchor, bias, 0, offset, units, 1, head_size)
        _heads(ctx, anchor, out, 2, 0, units, 1, head_size)
        _cache(ctx, anchor, [ctx.input(4), ctx.output(1)], 2, units)
        ctx.nonchannel_tensor(x, [0, 1])
        ctx.nonchannel_tensor(out, [0, 1])
        ctx.label(ctx.axis(out, 2), "heads")

    def rewrite(self, node, ctx: RewriteContext) -> None:
        out = ctx.output(0)
        heads = int(ctx.attr("num_heads")) * ctx.new_size(out, 2) // ctx.old_size(out, 2)
        ctx.set_attr("num_heads", heads)
        if ctx.attr("qkv_hidden_sizes", None):
            ctx.set_attr("qkv_hidden_sizes", [ctx.new_size(out, 2)] * 3)

    def macs(self, node, ctx: ShapeView) -> int:
        x, w = ctx.shape(ctx.input(0)), ctx.shape(ctx.input(1))
        steps = np.prod([d if isinstance(d, int) else 1 for d in x[:-1]])
        return int(steps) * int(w[0]) * int(w[1])


@register("RotaryEmbedding", domain="com.microsoft")
@register("RotaryEmbedding")
class RotaryEmbeddingHandler(OpHandler):
    """Y = rotate(X) with cos/sin caches per head dimension: X is [B, S, N*H] (``num_heads`` given) or [B, N, S,
    H]. Each head dimension mixes with its rotation partner, so whole heads go; head size stays."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        rank = ctx.rank(x)
        for axis in range(rank):
            ctx.identity(ctx.axis(x, axis), ctx.axis(y, axis))
        if rank == 4:
            ctx.nonchannel_tensor(x, [0, 2])
            ctx.block(ctx.axis(x, 3), f"{ctx.where()} rotates pairs of head dimensions")
            ctx.label(ctx.axis(x, 1), "heads")
            return
        heads, width = int(ctx.attr("num_heads", 0)), ctx.size(x, 2)
        if rank != 3 or not heads or width is None:
            ctx.block_all(f"{node.op} on a 3-D input needs num_heads and a static hidden width")
            return
        head_size = width // heads
        units = np.arange(heads)
        _heads(ctx, (ctx.axis(x, 2), units * head_size), x, 2, 0, units, 1, head_size)
        ctx.nonchannel_tensor(x, [0, 1])
        ctx.label(ctx.axis(x, 2), "heads")

    def rewrite(self, node, ctx: RewriteContext) -> None:
        x = ctx.input(0)
        if ctx.rank(x) == 3 and ctx.attr("num_heads", 0):
            ctx.set_attr("num_heads", int(ctx.attr("num_heads")) * ctx.new_size(x, 2) // ctx.old_size(x, 2))
