"""Ops that move or regroup axes without touching values: Transpose permutes axes; Reshape, Flatten, Squeeze
and Unsqueeze regroup them (see ``couple_reshape`` for how a split or merged channel axis is factored)."""

from __future__ import annotations

import numpy as np

from onnxprune.errors import PruneError
from onnxprune.handler import AnalysisContext, OpHandler, RewriteContext, register
from op_handlers.common import couple_reshape, is_static, trace_shape_element


@register("Transpose")
class TransposeHandler(OpHandler):
    """Y axis i is X axis perm[i] (perm defaults to reversing the axes)."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        rank = ctx.rank(x)
        perm = ctx.attr("perm") or list(reversed(range(rank)))
        for out_axis, in_axis in enumerate(perm):
            ctx.identity(ctx.axis(x, int(in_axis)), ctx.axis(y, out_axis))

    def axis_source(self, node, ctx):
        """Output axis i holds input axis perm[i]."""
        return [int(a) for a in (ctx.attr("perm") or reversed(range(ctx.rank(ctx.input(0)))))]


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
            elif source is None and trace_shape_element(ctx, target, axis, ctx.size) is None:
                ctx.block(ctx.axis(y, axis), f"{ctx.where()}: target entry {axis} is computed at run time")
            # else computed from static dims read by Shape (Shape(k)[1] * n_rep): checked when rewritten

    def complete_shape(self, node, ctx):
        """Resolve each target entry (constant, 0 = copy, Shape(t)[p] = t's dim) and the -1 entry from the element
        count, matching symbolic dims on both sides (a -1 that takes up dynamic dims stays symbolic). ONNX inference
        names dims it loses track of 'unk__N' (after a broadcast with a mask of unknown shape, say): where the input's
        symbols differ from the target's only by such names and their counts agree, they are taken to be the same
        dims in another order (exporters build these targets from the shape of the tensor being reshaped or of the
        block's input)."""
        x, target = ctx.input(0), ctx.input(1)
        count = ctx.numel(target)
        if count is None or int(ctx.attr("allowzero", 0)):
            return None
        dims, rest = [], None
        for position in range(count):
            source = trace_shape_element(ctx, target, position)
            if isinstance(source, tuple):
                dims.append(ctx.shape(source[0])[source[1]])
            elif source == 0 and position < ctx.rank(x):
                dims.append(ctx.shape(x)[position])
            elif source == -1 and rest is None:
                rest = position
                dims.append(None)
            elif isinstance(source, int) and source > 0:
                dims.append(source)
            else:
                return None
        if rest is None:
            return dims
        symbols_in = sorted(str(d) for d in ctx.shape(x) if not is_static(d))
        symbols_out = sorted(str(d) for k, d in enumerate(dims) if k != rest and not is_static(d))
        if len(symbols_in) > len(symbols_out):  # -1 absorbs dynamic dims ([B, T, 32] -> [-1, 32]): stays symbolic
            old = ctx.output(0).shape
            dims[rest] = old[rest] if old is not None and isinstance(old[rest], str) else f"{node.name}_dim{rest}"
            return dims
        lost = [d for d in set(symbols_in) - set(symbols_out) if not d.startswith("unk__")]
        if symbols_in != symbols_out and (lost or len(symbols_in) != len(symbols_out)):
            return None
        if rest is not None:
            known = int(np.prod([d for k, d in enumerate(dims) if k != rest and is_static(d)]))
            total = int(np.prod([d for d in ctx.shape(x) if is_static(d)]))
            if known == 0 or total % known:
                return None
            dims[rest] = total // known
        return dims

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
