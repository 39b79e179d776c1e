"""onnxruntime's MultiHeadAttention and Attention (com.microsoft) of encoders, encoder-decoders and diffusion
models: whole heads are the unit (head sizes stay), ``num_heads`` / ``qkv_hidden_sizes`` are rewritten, and both
are mask-exact like the decoder ops of ``contrib_attention``, whose head couplings they share."""

from __future__ import annotations

import numpy as np
from onnxprune.op_handlers.contrib_attention import couple_head_axis, couple_heads

from onnxprune.handlers import AnalysisContext, OpHandler, RewriteContext, ShapeView, register


def _attention_bias(ctx: AnalysisContext, anchor, tensor, heads: int, units: np.ndarray) -> None:
    """attention_bias [B or 1, N or 1, S, T] added to the scores: a head axis (size N) goes with the heads; a
    broadcast one (size 1) stays as it is."""
    if tensor is not None and tensor.name and ctx.rank(tensor) == 4 and heads > 1 and ctx.size(tensor, 1) != 1:
        couple_head_axis(ctx, anchor, [tensor], 1, units)


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
            couple_heads(ctx, anchor, tensor, 2, 0, units, 1, size)
            ctx.nonchannel_tensor(tensor, [0, 1])
            ctx.label(ctx.axis(tensor, 2), "heads")
        split = {"packed_qkv": [(query, 2)], "packed_kv": [(key, 2)], "bnsh_kv": [(key, 1), (value, 1)]}.get(kind, [])
        for tensor, axis in split:
            couple_head_axis(ctx, anchor, [tensor], axis, units)
            ctx.label(ctx.axis(tensor, axis), "heads")
        if bias is not None:
            for offset, size in ((0, qk), (heads * qk, qk), (2 * heads * qk, v)):
                couple_heads(ctx, anchor, bias, 0, offset, units, 1, size)
        _attention_bias(ctx, anchor, ctx.input(5), heads, units)
        caches = [ctx.input(6), ctx.input(7), ctx.output(1), ctx.output(2), ctx.output(3)]
        couple_head_axis(ctx, anchor, caches, 1, units)

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
            couple_heads(ctx, anchor, w, 1, offset, units, 1, width // heads)
            if bias is not None:
                couple_heads(ctx, anchor, bias, 0, offset, units, 1, width // heads)
        couple_heads(ctx, anchor, out, 2, 0, units, 1, v // heads)
        couple_head_axis(ctx, anchor, [ctx.input(4), ctx.output(1)], 2, units)
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
