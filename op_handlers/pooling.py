"""Pooling keeps the channel axis; Reduce* ops keep the axes they do not reduce.

A reduction over a channel axis stays valid after pruning (the reduced axis has size 1 or vanishes) but only
sums are unchanged by zeroed channels, so Mean/Max/Prod/LogSumExp over a channel axis are not mask-exact.
"""

from __future__ import annotations

from onnxprune.op_handlers.common import axes_argument

from onnxprune.handlers import AnalysisContext, OpHandler, register

POOLS = ("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "MaxRoiPool")
SUM_LIKE = ("ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2")
OTHER_REDUCE = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceLogSum", "ReduceLogSumExp")


@register(*POOLS)
class PoolHandler(OpHandler):
    """Y[N, C, ...] from X[N, C, ...] window by window: axis 1 is kept, the rest are batch/spatial."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x = ctx.input(0)
        for out in [t for t in node.outputs if t.name]:
            ctx.identity(ctx.axis(x, 1), ctx.axis(out, 1))
            ctx.nonchannel_tensor(out, [0, *range(2, ctx.rank(out))])
        ctx.nonchannel_tensor(x, [0, *range(2, ctx.rank(x))])
        indices = ctx.output(1)
        if indices is not None:  # MaxPool's flat indices ((n * C + c) * H + h) * W + w change with C
            ctx.block(ctx.axis(indices, 1), f"{ctx.where()}: its Indices output encodes the channel count")


@register(*SUM_LIKE, *OTHER_REDUCE, "ArgMax", "ArgMin")
class ReduceHandler(OpHandler):
    """Reduction over ``axes`` (attribute before opset 18, ReduceSum 13; input after), keepdims or not."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        rank = ctx.rank(x)
        try:
            if node.op in ("ArgMax", "ArgMin"):
                axes = [int(ctx.attr("axis", 0))]
            else:
                axes = axes_argument(ctx, 1)
        except ValueError as exc:
            ctx.block_all(str(exc))
            return
        if not axes:
            axes = [] if int(ctx.attr("noop_with_empty_axes", 0)) else list(range(rank))
        axes = sorted(a % rank for a in axes)
        keep = int(ctx.attr("keepdims", 1))
        out_axis = 0
        for axis in range(rank):
            if axis in axes:
                out_axis += keep
                if node.op in ("ArgMax", "ArgMin") and ctx.size(x, axis) != 1:
                    ctx.block(ctx.axis(x, axis), f"{ctx.where()} returns positions along this axis")
                elif node.op not in SUM_LIKE and ctx.size(x, axis) != 1:
                    ctx.inexact(ctx.axis(x, axis), f"{node.op} reduces over this axis")
                    if node.op == "ReduceMean":  # the statistics of a decomposed LayerNorm / RMSNorm
                        ctx.label(ctx.axis(x, axis), "normalized")
                continue
            ctx.identity(ctx.axis(x, axis), ctx.axis(y, out_axis))
            out_axis += 1
