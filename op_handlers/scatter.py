"""Scatters, as message passing writes them: ScatterElements (``scatter_add_``, ``scatter_reduce``, PyG's
``scatter`` with an index expanded from [E] to [E, C]) and ScatterND (``index_add_``, ``index_put_``).

Y = data, then updates written (or reduced: add, mul, max, min) at the positions the indices address. Y has data's
shape, axis for axis. The addressed axes (graph nodes) are positions: pruning an entry would change where updates
land, so they are blocked. The axes the updates run over alongside them (graph edges) are non-channel. Every other
axis (features, heads) is a plain per-channel axis of data, updates, indices and Y alike: column c of Y depends on
column c of data and updates only, so pruning it is mask-exact for every reduction.
"""

from __future__ import annotations

from onnxprune.op_handlers.common import couple_identity_all

from onnxprune.handlers import AnalysisContext, OpHandler, register


def _block_positions(ctx: AnalysisContext, tensors, axis: int) -> None:
    for tensor in tensors:
        ctx.block(ctx.axis(tensor, axis), f"{ctx.where()} writes updates at positions along this axis")


@register("ScatterElements")
class ScatterElementsHandler(OpHandler):
    """Y[.., indices[.., i, ..], ..] (op)= updates[.., i, ..] along ``axis``: updates and indices share a shape;
    their other axes are Y's (and data's) same axes; data/Y's scatter axis is addressed by position."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        data, indices, updates, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
        rank = ctx.rank(data)
        axis = int(ctx.attr("axis", 0)) % rank
        couple_identity_all(ctx, data, y)
        _block_positions(ctx, (data, y), axis)
        ctx.nonchannel(ctx.axis(updates, axis))
        for a in range(rank):
            ctx.identity(ctx.axis(indices, a), ctx.axis(updates, a))
            if a != axis:
                ctx.identity(ctx.axis(updates, a), ctx.axis(y, a))


@register("ScatterND")
class ScatterNDHandler(OpHandler):
    """Y = data with Y[indices[i]] (op)= updates[i]: the last indices axis holds k coordinates into Y's first k
    axes; updates' shape is indices.shape[:-1] + data.shape[k:], so updates' trailing axes are Y's axes k.."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        data, indices, updates, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
        k, ri, rank = ctx.size(indices, -1), ctx.rank(indices), ctx.rank(data)
        couple_identity_all(ctx, data, y)
        if k is None:
            ctx.block_all("ScatterND coordinate count is dynamic")
            return
        for a in range(k):
            _block_positions(ctx, (data, y), a)
        ctx.block(ctx.axis(indices, ri - 1), f"{ctx.where()}: this axis holds coordinates")
        for a in range(ri - 1):
            ctx.identity(ctx.axis(indices, a), ctx.axis(updates, a))
            ctx.nonchannel(ctx.axis(updates, a))
        for a in range(k, rank):
            ctx.identity(ctx.axis(updates, ri - 1 + a - k), ctx.axis(y, a))
