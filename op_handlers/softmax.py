"""Softmax, LogSoftmax and Hardmax: Y has X's shape and every axis maps to itself; the normalised axes make each
output depend on every entry along them, so pruning one of them is not mask-exact (in attention they are the key
sequence axis, which is never a channel axis).

Before opset 13 these ops flatten X to 2-D at ``axis`` (default 1) and normalise over all axes from ``axis`` on;
from opset 13 they normalise over ``axis`` alone (default -1).
"""

from __future__ import annotations

import onnx_graphsurgeon as gs
from onnxprune.op_handlers.common import couple_identity_all

from onnxprune.handlers import AnalysisContext, OpHandler, register


@register("Softmax", "LogSoftmax", "Hardmax")
class SoftmaxHandler(OpHandler):
    """Y = exp(X) / sum(exp(X)) (LogSoftmax: its log; Hardmax: one-hot of the max) over ``axis`` (opset >= 13) or
    over axes [axis, rank) (older opsets)."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        rank = ctx.rank(x)
        couple_identity_all(ctx, x, y)
        if ctx.opset() >= 13:
            axes = [int(ctx.attr("axis", -1)) % rank]
        else:
            axes = list(range(int(ctx.attr("axis", 1)) % rank, rank))
        for axis in axes:
            if ctx.size(x, axis) != 1:
                ctx.inexact(ctx.axis(x, axis), f"{ctx.where()} normalises over this axis")
            if any(_contracts_with_constant(c, y, axis, rank) for c in y.outputs):
                ctx.block(ctx.axis(x, axis), "fixed-bin distribution read by a constant projection to one value (DFL): "
                          f"{ctx.where()} normalises this axis and {y.outputs[0].op} reads it with fixed weights")


def _contracts_with_constant(consumer: gs.Node, y: gs.Tensor, axis: int, rank: int) -> bool:
    """Whether ``consumer`` sums ``y``'s ``axis`` against a constant weight into one value (a Conv with one output
    channel, a MatMul with one output column): the expectation over a fixed set of bins, like YOLO's
    Distribution Focal Loss decoder (a softmax over channels feeding a layer of several outputs stays prunable)."""
    if not consumer.inputs or consumer.inputs[0] is not y or len(consumer.inputs) < 2:
        return False
    contracted, out_axis = {"Conv": (1, 0), "MatMul": (rank - 1, -1)}.get(consumer.op, (None, 0))
    weight = consumer.inputs[1]
    shape = weight.shape if isinstance(weight, gs.Constant) else None
    return contracted == axis and shape is not None and len(shape) >= 2 and shape[out_axis] == 1
