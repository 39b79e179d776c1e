"""onnxruntime's fused attention ops (com.microsoft) of decoders: GroupQueryAttention and RotaryEmbedding, and the
head couplings every attention handler uses (MultiHeadAttention and Attention are in ``contrib_mha``). Heads are the
unit: head size stays (rotary caches and ``scale`` are per head
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


def couple_heads(ctx: AnalysisContext, anchor, tensor, axis: int, offset: int, units: np.ndarray, per_unit: int,
                 head_size: int) -> None:
    """Couple channels ``offset + (unit * per_unit + r) * head_size + d`` of ``tensor``'s ``axis`` with the anchor
    index of each unit (r < per_unit, d < head_size): every channel of a unit's heads goes with it."""
    u, r, d = np.meshgrid(units, np.arange(per_unit), np.arange(head_size), indexing="ij")
    idx = (offset + (u * per_unit + r) * head_size + d).reshape(-1)
    ctx.couple(ctx.axis(tensor, axis), anchor[0], idx, anchor[1][u.reshape(-1)])


def couple_head_axis(ctx: AnalysisContext, anchor, tensors, axis: int, units: np.ndarray) -> None:
    """Couple a whole-head axis (one index per unit) of ``tensors`` with the anchor, the other axes non-channel:
    KV caches [B, heads, T, H] (or [2, B, heads, T, H], Attention's past), 4-D key/value, head-shaped biases."""
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
            self._querycouple_heads(ctx, query, key, value, out, heads, kv, head_size)
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
        couple_heads(ctx, anchor, query, 2, 0, units, rep, head_size)
        couple_heads(ctx, anchor, out, 2, 0, units, rep, head_size)
        if key is None:
            couple_heads(ctx, anchor, query, 2, heads * head_size, units, 1, head_size)
            couple_heads(ctx, anchor, query, 2, (heads + kv) * head_size, units, 1, head_size)
        else:
            couple_heads(ctx, anchor, key, 2, 0, units, 1, head_size)
            couple_heads(ctx, anchor, value, 2, 0, units, 1, head_size)
        couple_head_axis(ctx, anchor, [ctx.input(3), ctx.input(4), ctx.output(1), ctx.output(2)], 1, units)
        for tensor in [t for t in (query, key, value, out) if t is not None]:
            ctx.label(ctx.axis(tensor, 2), "heads")

    @staticmethod
    def _querycouple_heads(ctx: AnalysisContext, query, key, value, out, heads: int, kv: int, head_size: int) -> None:
        """One unit per query head (query and output channels), the same count from every KV group; KV heads stay."""
        units = np.arange(heads)
        anchor = (ctx.axis(query, 2), units * head_size)
        couple_heads(ctx, anchor, query, 2, 0, units, 1, head_size)
        couple_heads(ctx, anchor, out, 2, 0, units, 1, head_size)
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
        couple_heads(ctx, (ctx.axis(x, 2), units * head_size), x, 2, 0, units, 1, head_size)
        ctx.nonchannel_tensor(x, [0, 1])
        ctx.label(ctx.axis(x, 2), "heads")

    def rewrite(self, node, ctx: RewriteContext) -> None:
        x = ctx.input(0)
        if ctx.rank(x) == 3 and ctx.attr("num_heads", 0):
            ctx.set_attr("num_heads", int(ctx.attr("num_heads")) * ctx.new_size(x, 2) // ctx.old_size(x, 2))
