"""Position plumbing of transformers: Range (positions), Trilu (causal masks), CumSum (position ids from a padding
mask), GatherElements and GatherND (masks indexed by batch/query/key positions).

These ops act on sequence axes, never on channels: every axis whose entries they address by position is blocked
(removing an entry would shift what the positions mean), the others pass through unchanged.
"""

from __future__ import annotations

from onnxprune.op_handlers.common import couple_identity_all

from onnxprune.handlers import AnalysisContext, OpHandler, register


@register("Range")
class RangeHandler(OpHandler):
    """Y = [start, start + delta, ...) from three scalars: a sequence of positions, never a channel axis."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        ctx.nonchannel(ctx.axis(ctx.output(0), 0))


@register("Trilu")
class TriluHandler(OpHandler):
    """Y = upper/lower triangle of X's last two axes (offset k): those axes are addressed by position."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        rank = ctx.rank(x)
        for axis in range(rank):
            if axis < rank - 2:
                ctx.identity(ctx.axis(x, axis), ctx.axis(y, axis))
            else:
                for tensor in (x, y):
                    ctx.block(ctx.axis(tensor, axis), f"{ctx.where()} keeps a triangle by position along this axis")


@register("CumSum")
class CumSumHandler(OpHandler):
    """Y = running sum of X along ``axis`` (a constant input): each entry depends on every earlier one."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        couple_identity_all(ctx, x, y)
        axis = ctx.const(ctx.input(1))
        if axis is None:
            ctx.block_all("CumSum axis is computed at run time")
            return
        axis = int(axis.reshape(-1)[0]) % ctx.rank(x)
        ctx.block(ctx.axis(x, axis), f"{ctx.where()} sums along this axis (entries depend on their position)")


@register("GatherElements")
class GatherElementsHandler(OpHandler):
    """Y[.., i, ..] = X[.., indices[.., i, ..], ..] along ``axis``: Y has the indices' shape; other axes of X,
    indices and Y are the same axis (where their sizes agree); X's gathered axis is addressed by position."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, indices, y = ctx.input(0), ctx.input(1), ctx.output(0)
        rank = ctx.rank(x)
        gather_axis = int(ctx.attr("axis", 0)) % rank
        ctx.block(ctx.axis(x, gather_axis), f"{ctx.where()} selects entries of this axis by position")
        for axis in range(rank):
            ctx.identity(ctx.axis(indices, axis), ctx.axis(y, axis))
            if axis != gather_axis:
                ctx.identity(ctx.axis(x, axis), ctx.axis(y, axis))


@register("GatherND")
class GatherNDHandler(OpHandler):
    """Y = X[indices] with the last indices axis holding k coordinates into X's axes [b, b + k) (b =
    ``batch_dims``): Y's shape is indices.shape[:-1] + X.shape[b + k:]."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, indices, y = ctx.input(0), ctx.input(1), ctx.output(0)
        batch = int(ctx.attr("batch_dims", 0))
        k = ctx.size(indices, -1)
        ri, rx = ctx.rank(indices), ctx.rank(x)
        if k is None:
            ctx.block_all("GatherND coordinate count is dynamic")
            return
        for axis in range(batch):
            ctx.identity(ctx.axis(x, axis), ctx.axis(y, axis))
        for axis in range(ri - 1):
            ctx.identity(ctx.axis(indices, axis), ctx.axis(y, axis))
        for axis in range(batch, batch + k):
            ctx.block(ctx.axis(x, axis), f"{ctx.where()} selects entries of this axis by position")
        ctx.block(ctx.axis(indices, ri - 1), f"{ctx.where()}: this axis holds coordinates")
        for axis in range(batch + k, rx):
            ctx.identity(ctx.axis(x, axis), ctx.axis(y, ri - 1 + axis - batch - k))
