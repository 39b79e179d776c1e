"""onnxruntime's fused attention ops (com.microsoft): GroupQueryAttention, MultiHeadAttention, Attention (packed
QKV weights), and RotaryEmbedding. Heads are the unit: head size stays (rotary caches and ``scale`` are per head
dimension), so pruning removes whole heads and the node's ``num_heads`` / ``kv_num_heads`` are rewritten.

GroupQueryAttention: query head q reads KV head q // (num_heads / kv_num_heads). What one unit is, is the analysis
setting ``attention_units``: 'kv_groups' (default) makes a whole KV group one unit (its KV head and the query heads
that read it), which keeps the grouping valid; the KV cache (past_key/past_value inputs [B, kv, P, H], present
outputs) follows the KV heads, and as graph inputs/outputs those axes are protected unless allowed
(``--allow-cache-io``). 'query_heads' makes each query head a unit (its query channels and its output channels); the
query heads of one group are interchangeable, so any subset of equal size per group is valid, and the handler
declares the output's KV groups as equal blocks (selection takes the same count from each and keeps one); KV heads
and the cache stay. The rewrite reads num_heads from the output width and kv_num_heads from the key width (packed:
the query width less the query heads), so it is right in both.

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


def _width(ctx: RewriteContext, tensor, old: bool = False) -> int:
    """Static width (axis 2) of ``tensor`` after pruning (``old``: before); an axis outside every group keeps its
    size."""
    width = ctx.old_size(tensor, 2) if old else ctx.new_size(tensor, 2)
    return int(ctx.size(tensor, 2) if width is None else width)


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
        if ctx.options.attention_units == "query_heads":
            self._query_heads(ctx, query, key, value, out, heads, kv, head_size)
        else:
            self._kv_groups(ctx, query, key, value, out, heads, kv, head_size)
        for tensor in [t for t in (query, key, value, out) if t is not None]:
            ctx.nonchannel_tensor(tensor, [0, 1])

    @staticmethod
    def _kv_groups(ctx: AnalysisContext, query, key, value, out, heads: int, kv: int, head_size: int) -> None:
        """One unit per KV group: its query heads, KV head (packed or not) and cache head go together."""
        rep = heads // kv
        units = np.arange(kv)
        anchor = (ctx.axis(query, 2), units * rep * head_size)
        _heads(ctx, anchor, query, 2, 0, units, rep, head_size)
        _heads(ctx, anchor, out, 2, 0, units, rep, head_size)
        if key is None:
            _heads(ctx, anchor, query, 2, heads * head_size, units, 1, head_size)
            _heads(ctx, anchor, query, 2, (heads + kv) * head_size, units, 1, head_size)
        else:
            _heads(ctx, anchor, key, 2, 0, units, 1, head_size)
            _heads(ctx, anchor, value, 2, 0, units, 1, head_size)
        _cache(ctx, anchor, [ctx.input(3), ctx.input(4), ctx.output(1), ctx.output(2)], 1, units)
        for tensor in [t for t in (query, key, value, out) if t is not None]:
            ctx.label(ctx.axis(tensor, 2), "heads")

    @staticmethod
    def _query_heads(ctx: AnalysisContext, query, key, value, out, heads: int, kv: int, head_size: int) -> None:
        """One unit per query head (query and output channels), the same count from every KV group; KV heads stay."""
        units = np.arange(heads)
        anchor = (ctx.axis(query, 2), units * head_size)
        _heads(ctx, anchor, query, 2, 0, units, 1, head_size)
        _heads(ctx, anchor, out, 2, 0, units, 1, head_size)
        ctx.equal_blocks(ctx.axis(out, 2), kv)
        for tag in ("heads", "query_heads"):  # not the packed query: its KV columns are channels of other groups
            ctx.label(ctx.axis(out, 2), tag)
        reason = "KV heads stay while query heads are the units (analysis setting attention_units 'query_heads')"
        if key is None:
            ctx.keep_indices(ctx.axis(query, 2), np.arange(heads * head_size, (heads + 2 * kv) * head_size), reason)
        else:
            for tensor in (key, value):
                ctx.block(ctx.axis(tensor, 2), f"{reason} ({ctx.where()})")

    def rewrite(self, node, ctx: RewriteContext) -> None:
        query, key, out = ctx.input(0), ctx.input(1), ctx.output(0)
        head_size = _width(ctx, out, old=True) // int(ctx.attr("num_heads"))
        heads = _width(ctx, out) // head_size
        kv_width = _width(ctx, key) if key is not None else (_width(ctx, query) - heads * head_size) // 2
        ctx.set_attr("num_heads", heads)
        ctx.set_attr("kv_num_heads", kv_width // head_size)

    def macs(self, node, ctx: ShapeView) -> int:
        return 0  # the projections are MatMuls before and after; scores depend on the dynamic sequence length


def _attention_bias(ctx: AnalysisContext, anchor, tensor, heads: int, units: np.ndarray) -> None:
    """attention_bias [B or 1, N or 1, S, T] added to the scores: a head axis (size N) goes with the heads; a
    broadcast one (size 1) stays as it is."""
    if tensor is not None and tensor.name and ctx.rank(tensor) == 4 and heads > 1 and ctx.size(tensor, 1) != 1:
        _cache(ctx, anchor, [tensor], 1, units)


def _mha_layout(ctx: AnalysisContext, query, key, value, heads: int) -> tuple[str, int, int] | str:
    """(layout, head size, value head size) of a MultiHeadAttention node, or the reason it is not understood.
    Layouts: '3d' (query [B, S, N*H], key [B, L, N*H], value [B, L, N*Hv]), 'packed_qkv' (query [B, S, N, 3, H]),
    'packed_kv' (key [B, L, N, 2, H]), 'bnsh_kv' (key and value [B, N, L, H], a cross-attention cache; the kernel
    wants them of one shape)."""
    ranks = tuple(None if t is None else ctx.rank(t) for t in (query, key, value))
    width = ctx.size(query, 2) if ranks[0] == 3 else None
    if ranks == (5, None, None) and ctx.size(query, 2) == heads and ctx.size(query, 3) == 3:
        head_size = ctx.size(query, 4)
        return ("packed_qkv", head_size, head_size) if head_size else "packed QKV [B, S, N, 3, H] of dynamic H"
    if ranks[0] != 3 or width is None or width % heads:
        return f"query of rank {ranks[0]} and width {width} (num_heads {heads})"
    if ranks == (3, 3, 3) and ctx.size(key, 2) == width and ctx.size(value, 2) is not None:
        return "3d", width // heads, ctx.size(value, 2) // heads
    if ranks == (3, 5, None) and ctx.size(key, 2) == heads and ctx.size(key, 3) == 2:
        return "packed_kv", width // heads, width // heads
    if ranks == (3, 4, 4) and ctx.size(key, 1) == heads and ctx.shape(key) == ctx.shape(value) \
            and ctx.size(key, 3) == width // heads:
        return "bnsh_kv", width // heads, width // heads
    if ranks == (3, None, None):
        return "query packed as [B, S, 3*N*H] (BS3NH, which onnxruntime's MultiHeadAttention refuses too)"
    return f"query/key/value of ranks {ranks} and sizes that do not match num_heads {heads}"


@register("MultiHeadAttention", domain="com.microsoft")
class MultiHeadAttentionHandler(OpHandler):
    """output[B, S, N*Hv] = MHA(query, key, value, bias[N*(2H + Hv)], key_padding_mask, attention_bias[B or 1, N or
    1, S, T], past_key, past_value [B, N, P, H], past_sequence_length, cache_indirection); present_key/value [B, N,
    T, H], qk [B, N, S, T]. Every layout of the spec (see ``_mha_layout``): 3-D query/key/value, packed QKV query
    [B, S, N, 3, H], packed KV key [B, L, N, 2, H], 4-D key/value [B, N, L, H]. Heads sit on axis 2 of 3-D tensors
    (as N*H channels), axis 2 of the packed ones, axis 1 of the 4-D ones; the packed axis (3 or 2) and the head-size
    axis of 4-D and 5-D tensors are declared non-channel, so a Reshape that splits a projection into them factors
    on the heads. key_padding_mask, past_sequence_length and cache_indirection have no head axis (untouched)."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        query, key, value, bias, out = ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3), ctx.output(0)
        heads = int(ctx.attr("num_heads"))
        layout = _mha_layout(ctx, query, key, value, heads)
        if isinstance(layout, str):
            ctx.block_all(f"{node.op} with {layout} is not supported")
            return
        kind, qk, v = layout
        if kind == "packed_kv" and bias is not None:
            ctx.block_all(f"{node.op} with packed KV and a bias (onnxruntime refuses it) is not supported")
            return
        units = np.arange(heads)
        anchor = (ctx.axis(out, 2), units * v)
        flat = [(out, v), (query, qk)] if kind != "packed_qkv" else [(out, v)]
        flat += [(key, qk), (value, v)] if kind == "3d" else []
        for tensor, size in flat:
            _heads(ctx, anchor, tensor, 2, 0, units, 1, size)
            ctx.nonchannel_tensor(tensor, [0, 1])
            ctx.label(ctx.axis(tensor, 2), "heads")
        split = {"packed_qkv": [(query, 2)], "packed_kv": [(key, 2)], "bnsh_kv": [(key, 1), (value, 1)]}.get(kind, [])
        for tensor, axis in split:
            _cache(ctx, anchor, [tensor], axis, units)
            ctx.label(ctx.axis(tensor, axis), "heads")
        if bias is not None:
            for offset, size in ((0, qk), (heads * qk, qk), (2 * heads * qk, v)):
                _heads(ctx, anchor, bias, 0, offset, units, 1, size)
        _attention_bias(ctx, anchor, ctx.input(5), heads, units)
        _cache(ctx, anchor, [ctx.input(6), ctx.input(7), ctx.output(1), ctx.output(2), ctx.output(3)], 1, units)

    def rewrite(self, node, ctx: RewriteContext) -> None:
        out = ctx.output(0)
        ctx.set_attr("num_heads", int(ctx.attr("num_heads")) * ctx.new_size(out, 2) // ctx.old_size(out, 2))


@register("Attention", domain="com.microsoft")
class AttentionHandler(OpHandler):
    """output[B, S, N*Hv] = Attention(input[B, S, D], weights[D, q + k + v], bias[q + k + v], mask_index, past[2,
    B, N, P, H], attention_bias[B or 1, N or 1, S, T], past_sequence_length); present [2, B, N, T, H]. Q, K, V
    columns are consecutive blocks of the packed weights, of widths ``qkv_hidden_sizes`` (q == k, the scores need
    it; v may differ) or a third of the columns each; head sizes q/N and v/N stay, and the rewrite scales
    ``qkv_hidden_sizes`` with the kept heads."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, w, bias, out = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
        heads = int(ctx.attr("num_heads"))
        sizes = [int(s) for s in ctx.attr("qkv_hidden_sizes", []) or []]
        total = ctx.size(w, 1) if ctx.is_constant(w) else None
        q, v = (sizes[0], sizes[2]) if len(sizes) == 3 else ((total or 0) // 3,) * 2
        if total is None or (sizes and (len(sizes) != 3 or sizes[0] != sizes[1] or sum(sizes) != total)) \
                or q % heads or v % heads:
            ctx.block_all(f"{node.op} needs constant packed weights of Q, K, V widths q, q, v (qkv_hidden_sizes "
                          f"{sizes or 'absent'}, {total} weight columns, num_heads {heads})")
            return
        units = np.arange(heads)
        anchor = (ctx.axis(w, 1), units * (q // heads))
        ctx.identity(ctx.axis(x, 2), ctx.axis(w, 0))
        ctx.producer(ctx.axis(w, 1))
        for offset, width in ((0, q), (q, q), (2 * q, v)):
            _heads(ctx, anchor, w, 1, offset, units, 1, width // heads)
            if bias is not None:
                _heads(ctx, anchor, bias, 0, offset, units, 1, width // heads)
        _heads(ctx, anchor, out, 2, 0, units, 1, v // heads)
        _cache(ctx, anchor, [ctx.input(4), ctx.output(1)], 2, units)
        _attention_bias(ctx, anchor, ctx.input(5), heads, units)
        ctx.nonchannel_tensor(x, [0, 1])
        ctx.nonchannel_tensor(out, [0, 1])
        ctx.label(ctx.axis(out, 2), "heads")

    def rewrite(self, node, ctx: RewriteContext) -> None:
        out = ctx.output(0)
        old = int(ctx.attr("num_heads"))
        heads = old * ctx.new_size(out, 2) // ctx.old_size(out, 2)
        ctx.set_attr("num_heads", heads)
        sizes = ctx.attr("qkv_hidden_sizes", None)
        if sizes:
            ctx.set_attr("qkv_hidden_sizes", [int(s) // old * heads for s in sizes])

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
