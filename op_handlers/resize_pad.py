"""Resize/Upsample and Pad: axes they leave unchanged are coupled; axes they resize or pad are blocked (these are
spatial axes in practice, so nothing prunable is lost). Resize given ``sizes`` gets the pruned sizes written."""

from __future__ import annotations

import numpy as np
from onnxprune.op_handlers.common import axes_argument, is_static

from onnxprune.handlers import AnalysisContext, OpHandler, RewriteContext, register


def _couple_unchanged(ctx: AnalysisContext, x, y, changed: set[int], why: str) -> None:
    for axis in range(ctx.rank(x)):
        if axis in changed:
            ctx.block(ctx.axis(x, axis), f"{ctx.where()} {why} this axis")
            ctx.block(ctx.axis(y, axis), f"{ctx.where()} {why} this axis")
        else:
            ctx.identity(ctx.axis(x, axis), ctx.axis(y, axis))


class _ResampleHandler(OpHandler):
    """Shared by Resize and Upsample; subclasses say where the scales are and whether sizes can be given."""

    sizes_input: int | None = None

    def scales(self, node, ctx: AnalysisContext) -> list[float] | None:
        """The scale factors (an empty list when ``sizes`` is given instead), or None when computed at run time."""
        raise NotImplementedError

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        xs, ys = ctx.shape(x), ctx.shape(y)
        changed = {a for a in range(len(xs)) if not (is_static(xs[a]) and xs[a] == ys[a])
                   and (is_static(xs[a]) or is_static(ys[a]))}
        scales = self.scales(node, ctx)
        if scales is None:
            ctx.block_all(f"{node.op} scales are computed at run time")
            return
        axes = [int(a) % len(xs) for a in (ctx.attr("axes") or range(len(xs)))]
        changed |= {axis for axis, scale in zip(axes, scales) if scale != 1}  # 12 * 1.06 -> 12 still moves indices
        _couple_unchanged(ctx, x, y, changed, "resizes")
        sizes = ctx.input(self.sizes_input) if self.sizes_input is not None else None
        if sizes is not None and not ctx.is_constant(sizes):
            ctx.block_all(f"{node.op} sizes are computed at run time")


@register("Resize")
class ResizeHandler(_ResampleHandler):
    """Y = resample(X) to ``sizes`` (input 3) or by ``scales`` (input 1 at opset 10, 2 later): axes whose input
    and output sizes agree (scale 1) are the same axis; given sizes are rewritten to the pruned ones."""

    sizes_input = 3

    def scales(self, node, ctx: AnalysisContext) -> list[float] | None:
        return _constant_floats(ctx, ctx.input(2 if ctx.opset() >= 11 else 1))

    def rewrite(self, node, ctx: RewriteContext) -> None:
        sizes = ctx.input(self.sizes_input)
        if sizes is None:
            return
        y = ctx.output(0)
        axes = ctx.attr("axes") or list(range(ctx.rank(y)))
        values = np.array(ctx.const(sizes), copy=True)
        for k, axis in enumerate(axes):
            if len(ctx.removed(y, int(axis) % ctx.rank(y))):
                values[k] = ctx.new_size(y, int(axis) % ctx.rank(y))
        ctx.set_input_values(self.sizes_input, values)


@register("Upsample")
class UpsampleHandler(_ResampleHandler):
    """Y = resample(X) by ``scales`` (attribute before opset 9, input 1 after): axes of scale 1 are the same axis."""

    def scales(self, node, ctx: AnalysisContext) -> list[float] | None:
        if "scales" in node.attrs:
            return [float(s) for s in ctx.attr("scales")]
        return _constant_floats(ctx, ctx.input(1))


def _constant_floats(ctx: AnalysisContext, tensor) -> list[float] | None:
    """A small constant's values as floats; [] for an absent input, None when computed at run time."""
    if tensor is None:
        return []
    values = ctx.const(tensor)
    return None if values is None else [float(s) for s in np.asarray(values).reshape(-1)]


@register("Pad")
class PadHandler(OpHandler):
    """Y = pad(X, pads): unpadded axes are the same axis; padded ones are blocked."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        rank = ctx.rank(x)
        pads = ctx.attr("pads") if "pads" in node.attrs else ctx.const(ctx.input(1))
        if pads is None:
            ctx.block_all("Pad amounts are computed at run time")
            return
        pads = [int(p) for p in np.asarray(pads).reshape(-1)]
        try:
            axes = axes_argument(ctx, 3) or list(range(rank))
        except ValueError as exc:
            ctx.block_all(str(exc))
            return
        n = len(axes)
        changed = {int(a) % rank for k, a in enumerate(axes) if pads[k] or pads[k + n]}
        _couple_unchanged(ctx, x, y, changed, "pads")
