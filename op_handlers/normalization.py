"""Normalisations: BatchNormalization and InstanceNormalization are per channel (mask-exact); GroupNormalization
loses whole groups of channels (so the other groups' statistics stay the same); LayerNormalization normalises over
its channel axes, so pruning them changes the other channels' values (not mask-exact)."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
from onnxprune.op_handlers.common import couple_identity_all

from onnxprune.handlers import AnalysisContext, OpHandler, RewriteContext, register


def _shared(tensor) -> bool:
    """A constant that other nodes read too (the dynamo exporter writes one ones/zeros pair for every GroupNorm
    spelled Reshape -> InstanceNormalization -> Reshape): coupling it would tie all those norms into one group."""
    return isinstance(tensor, gs.Constant) and len(tensor.outputs) > 1


@register("BatchNormalization", "InstanceNormalization")
class PerChannelNormHandler(OpHandler):
    """Y = scale[c] * normalise(X)[c] + B[c]: every per-channel input and output follows X's axis 1. A per-channel
    constant shared with other nodes is not coupled: this node gets its own sliced copy when X's axis 1 shrinks."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        channel = ctx.axis(x, 1)
        couple_identity_all(ctx, x, y)
        for tensor in [t for t in node.inputs[1:] if t.name and not _shared(t)] + \
                [t for t in node.outputs[1:] if t.name]:
            ctx.identity(ctx.axis(tensor, 0), channel)
        ctx.nonchannel_tensor(x, [0, *range(2, ctx.rank(x))])

    def rewrite(self, node, ctx: RewriteContext) -> None:
        x = ctx.input(0)
        if not len(ctx.removed(x, 1)):
            return
        for i, tensor in enumerate(node.inputs[1:], start=1):
            if tensor.name and _shared(tensor) and ctx.size(tensor, 0) == ctx.old_size(x, 1):
                ctx.set_input_values(i, ctx.const(tensor)[ctx.kept(x, 1)])

    def scale_inputs(self, node) -> list[int]:
        return [1]


@register("GroupNormalization")
class GroupNormHandler(OpHandler):
    """Y = scale * (X - mean_g) / std_g + B, statistics over each of num_groups consecutive channel groups g (and
    the spatial axes): prune whole groups only."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, scale, bias, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
        groups = int(ctx.attr("num_groups"))
        channels = ctx.size(x, 1)
        channel = ctx.axis(x, 1)
        couple_identity_all(ctx, x, y)
        ctx.nonchannel_tensor(x, [0, *range(2, ctx.rank(x))])
        if channels is None:
            ctx.block_all("channel count is dynamic")
            return
        per_group = channels // groups
        ctx.granularity(channel, per_group, "GroupNormalization groups")
        for param in (scale, bias):
            if ctx.shape(param)[0] == channels:
                ctx.identity(ctx.axis(param, 0), channel)
            else:  # opset 18: one scale per group
                ctx.couple(ctx.axis(param, 0), channel, np.repeat(np.arange(groups), per_group),
                           np.arange(channels))

    def rewrite(self, node, ctx: RewriteContext) -> None:
        x = ctx.input(0)
        per_group = ctx.old_size(x, 1) // int(ctx.attr("num_groups"))
        ctx.set_attr("num_groups", ctx.new_size(x, 1) // per_group)

    def scale_inputs(self, node) -> list[int]:
        return [1]


@register("LayerNormalization", "RMSNormalization")
class LayerNormHandler(OpHandler):
    """Y = Scale * (X - mean) / std + B, statistics over axes [axis, rank): those axes are coupled with Scale/B but
    are not mask-exact (RMSNorm, opset 23: Y = Scale * X / rms(X), without B and without centring)."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        rank = ctx.rank(x)
        first = int(ctx.attr("axis", -1)) % rank
        for axis in range(rank):
            ctx.identity(ctx.axis(x, axis), ctx.axis(y, axis))
        for param in [t for t in node.inputs[1:] if t.name]:
            lead = rank - ctx.rank(param)
            for axis in range(ctx.rank(param)):
                if ctx.shape(param)[axis] != 1:
                    ctx.identity(ctx.axis(param, axis), ctx.axis(x, axis + lead))
        for axis in range(first, rank):
            ctx.inexact(ctx.axis(x, axis), f"{node.op} normalises over this axis")
            ctx.label(ctx.axis(x, axis), "normalized")
        for extra in [t for t in node.outputs[1:] if t.name]:  # Mean and InvStdDev have size 1 on these axes
            for axis in range(first):
                ctx.identity(ctx.axis(extra, axis), ctx.axis(x, axis))

    def scale_inputs(self, node) -> list[int]:
        return [1]
