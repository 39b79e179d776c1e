"""Ops that move or regroup axes without touching values: Transpose permutes axes; Reshape, Flatten, Squeeze
and Unsqueeze regroup them (see ``couple_reshape`` for how a split or merged channel axis is factored)."""

from __future__ import annotations

from onnxprune.handler import AnalysisContext, OpHandler, RewriteContext, register
from op_handlers.common import couple_reshape, trace_shape_element


@register("Transpose")
class TransposeHandler(OpHandler):
    """Y axis i is X axis perm[i] (perm defaults to reversing the axes)."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        rank = ctx.rank(x)
        perm = ctx.attr("perm") or list(reversed(range(rank)))
        for out_axis, in_axis in enumerate(perm):
            ctx.identity(ctx.axis(x, int(in_axis)), ctx.axis(y, out_axis))


@register("Flatten", "Squeeze", "Unsqueeze")
class RegroupHandler(OpHandler):
    """Y holds X's elements in the same order under another shape; sizes follow from X (nothing to rewrite)."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        couple_reshape(ctx, ctx.input(0), ctx.output(0))

    def value_source(self, node, ctx, position):
        """Element order is unchanged, so shape values pass through."""
        return (0, position)


@register("Reshape")
class ReshapeHandler(RegroupHandler):
    """Like Flatten, but the target shape is a tensor: entries that state a pruned size are rewritten."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        super().analyse(node, ctx)
        y, target = ctx.output(0), ctx.input(1)
        for axis, dim in enumerate(ctx.shape(y)):
            if not (isinstance(dim, int) and dim > 1):
                continue
            source = trace_shape_element(ctx, target, axis)
            if isinstance(source, tuple):  # Shape(t)[p]: follows t's axis p at run time
                ctx.identity(ctx.axis(source[0], source[1]), ctx.axis(y, axis))
            elif source is None:
                ctx.block(ctx.axis(y, axis), f"{ctx.where()}: target entry {axis} is computed at run time")

    def rewrite(self, node, ctx: RewriteContext) -> None:
        y, target = ctx.output(0), ctx.input(1)
        for axis in range(ctx.rank(y)):
            source = trace_shape_element(ctx, target, axis) if len(ctx.removed(y, axis)) else None
            if isinstance(source, int) and source not in (-1, 0):  # Shape-read entries follow by themselves
                ctx.set_shape_value(1, axis, ctx.new_size(y, axis))
