"""Ops that move or regroup axes without touching values: Transpose permutes axes; Reshape, Flatten, Squeeze
and Unsqueeze regroup them (see ``couple_reshape`` for how a split or merged channel axis is factored)."""

from __future__ import annotations

import numpy as np
from onnxprune.op_handlers.common import couple_reshape, is_static, trace_shape_element

from onnxprune.errors import PruneError
from onnxprune.handlers import AnalysisContext, OpHandler, RewriteContext, register


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
    """Y = X.reshape(s) with s implied by the op (Flatten: 2-D at ``axis``; Squeeze/Unsqueeze: drop/add size-1
    axes): same elements in the same order; sizes follow from X (nothing to rewrite)."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        couple_reshape(ctx, ctx.input(0), ctx.output(0))


@register("Reshape")
class ReshapeHandler(RegroupHandler):
    """Y = X.reshape(target), target a tensor (0 copies X's dim, -1 is inferred): coupled as Flatten; target
    entries that state a pruned size are rewritten."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        super().analyse(node, ctx)
        y, target = ctx.output(0), ctx.input(1)
        for axis, dim in enumerate(ctx.shape(y)):
            if not (isinstance(dim, int) and dim > 1):
                continue
            source = trace_shape_element(ctx, target, axis)
            if isinstance(source, tuple):  # Shape(t)[p]: follows t's axis p at run time
                ctx.identity(ctx.axis(source[0], source[1]), ctx.axis(y, axis))
            elif source is None and trace_shape_element(ctx, target, axis, ctx.size) is None:
                ctx.block(ctx.axis(y, axis), f"{ctx.where()}: target entry {axis} is computed at run time")
            # else computed from static dims read by Shape (Shape(k)[1] * n_rep): checked when rewritten

    def rewrite(self, node, ctx: RewriteContext) -> None:
        y, target = ctx.output(0), ctx.input(1)
        for axis in range(ctx.rank(y)):
            if not is_static(ctx.shape(y)[axis]):
                continue
            source = trace_shape_element(ctx, target, axis)
            if source is None:  # computed from dims read by Shape: will it give the pruned size at run time?
                value = trace_shape_element(ctx, target, axis, lambda t, a: ctx.new_size(t, a) or ctx.size(t, a))
                if value != ctx.new_size(y, axis):
                    raise PruneError(f"Reshape node '{node.name}': target entry {axis} is computed at run time and "
                                     f"would be {value}, not {ctx.new_size(y, axis)}")
            elif isinstance(source, int) and source not in (-1, 0) and len(ctx.removed(y, axis)):
                ctx.set_shape_value(1, axis, ctx.new_size(y, axis))  # Shape-read entries follow by themselves
        _rescale_packed(node, ctx)


def _rescale_packed(node, ctx: RewriteContext) -> None:
    """A target entry computed at run time for a dynamic dim that packs a static factor (``B * heads``): scaled by
    new factor / old factor, read from the element counts (the factor is all the static dims do not account for)."""
    x, y, target = ctx.input(0), ctx.output(0), ctx.input(1)
    dyn_x = [a for a in range(ctx.rank(x)) if not is_static(ctx.shape(x)[a])]
    dyn_y = [a for a in range(ctx.rank(y)) if not is_static(ctx.shape(y)[a])]
    if len(dyn_x) != 1 or len(dyn_y) != 1 or trace_shape_element(ctx, target, dyn_y[0]) is not None:
        return  # a constant (-1 infers the dim), or a dim read by Shape, follows by itself
    factors = []
    for size_of in (ctx.size, lambda t, a: ctx.size(t, a) - len(ctx.removed(t, a))):
        numel_x = int(np.prod([size_of(x, a) for a in range(ctx.rank(x)) if a != dyn_x[0]]))
        numel_y = int(np.prod([size_of(y, a) for a in range(ctx.rank(y)) if a != dyn_y[0]]))
        factors.append((numel_x, numel_y))
    (old_x, old_y), (new_x, new_y) = factors
    if old_y and new_y and old_x % old_y == 0 and new_x % new_y == 0 and old_x // old_y != new_x // new_y:
        ctx.scale_shape_value(1, dyn_y[0], new_x // new_y, old_x // old_y)
