"""Pooling keeps the channel axis; Reduce* ops keep the axes they do not reduce.

A reduction over a channel axis stays valid after pruning (the reduced axis has size 1 or vanishes) but only
sums are unchanged by zeroed channels, so Mean/Max/Prod/LogSumExp over a channel axis are not mask-exact.
"""

from __future__ import annotations

from onnxprune.op_handlers.common import axes_argument

from onnxprune.axes import ChannelAxis
from onnxprune.handlers import AnalysisContext, OpHandler, register

POOLS = ("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "MaxRoiPool")
SUM_LIKE = ("ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2")
INEXACT_REDUCE = ("ReduceMax", "ReduceMin", "ReduceProd", "ReduceLogSum", "ReduceLogSumExp")
OTHER_REDUCE = ("ReduceMean", *INEXACT_REDUCE)  # every reduction that is not mask-exact


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


class ReduceHandler(OpHandler):
    """Y = reduce(X) over ``axes`` (attribute before opset 18, ReduceSum 13; input after), keepdims or not: kept
    axes pass through. Subclasses say what reducing over an axis of size > 1 means for pruning (``on_reduced``)."""

    def reduced_axes(self, ctx: AnalysisContext) -> list[int] | None:
        """The axes given to the node (None or empty: see ``noop_with_empty_axes``); ValueError if computed."""
        return axes_argument(ctx, 1)

    def on_reduced(self, ctx: AnalysisContext, axis: ChannelAxis) -> None:
        """Reducing over ``axis`` (size > 1 or dynamic); nothing for sums, which zeroed channels leave unchanged."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        rank = ctx.rank(x)
        try:
            axes = self.reduced_axes(ctx)
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
                if ctx.size(x, axis) != 1:
                    self.on_reduced(ctx, ctx.axis(x, axis))
                continue
            ctx.identity(ctx.axis(x, axis), ctx.axis(y, out_axis))
            out_axis += 1


@register(*SUM_LIKE)
class SumReduceHandler(ReduceHandler):
    """Y = sum over ``axes`` of X, |X|, X^2 (ReduceL1/L2 take a root after): mask-exact, zeros add nothing."""


@register(*INEXACT_REDUCE)
class InexactReduceHandler(ReduceHandler):
    """Y = max/min/prod/log-sum(-exp) over ``axes``: a zeroed channel still counts, so not mask-exact."""

    def on_reduced(self, ctx: AnalysisContext, axis: ChannelAxis) -> None:
        ctx.inexact(axis, f"{ctx.node.op} reduces over this axis")


@register("ReduceMean")
class ReduceMeanHandler(InexactReduceHandler):
    """Y = mean over ``axes``: not mask-exact (a zeroed channel still counts in the divisor); the reduced axes are
    labelled ``normalized``, as they are the statistics of a decomposed LayerNorm / RMSNorm."""

    def on_reduced(self, ctx: AnalysisContext, axis: ChannelAxis) -> None:
        super().on_reduced(ctx, axis)
        ctx.label(axis, "normalized")


@register("ArgMax", "ArgMin")
class ArgReduceHandler(ReduceHandler):
    """Y = position of the max/min of X along ``axis`` (an attribute): positions change when entries go, so the
    reduced axis is blocked."""

    def reduced_axes(self, ctx: AnalysisContext) -> list[int] | None:
        return [int(ctx.attr("axis", 0))]

    def on_reduced(self, ctx: AnalysisContext, axis: ChannelAxis) -> None:
        ctx.block(axis, f"{ctx.where()} returns positions along this axis")
