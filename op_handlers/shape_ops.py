"""Ops that read or build shapes: Shape/Size (read at run time, nothing to couple), ConstantOfShape and Expand
(sizes held in a shape tensor, rewritten after pruning), Gather (embedding tables, indexing)."""

from __future__ import annotations

from onnxprune.op_handlers.common import is_static, trace_shape_element

from onnxprune.handlers import AnalysisContext, OpHandler, RewriteContext, register


@register("Shape")
class ShapeHandler(OpHandler):
    """Y = X.shape[start:end], read at run time, so it follows whatever X becomes: no coupling, no block."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        pass


@register("Size")
class SizeHandler(OpHandler):
    """Y = prod(X.shape), a value (an element count, as in a hand-written mean) that pruning any axis of X
    changes: every axis of X is not mask-exact."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x = ctx.input(0)
        for axis in range(ctx.rank(x)):
            ctx.inexact(ctx.axis(x, axis), f"{ctx.where()} counts the elements of this axis")


def _couple_sizes(ctx: AnalysisContext, shape_input, out, positions: dict[int, int]) -> None:
    """Output axis sizes held in ``shape_input``: a constant entry is rewritten later; an entry read by Shape from
    another tensor follows that tensor's axis (coupled); anything else computed at run time blocks the axis."""
    for axis, position in positions.items():
        if not is_static(ctx.shape(out)[axis]):
            continue
        source = trace_shape_element(ctx, shape_input, position)
        if isinstance(source, tuple):
            ctx.identity(ctx.axis(source[0], source[1]), ctx.axis(out, axis))
        elif source is None:
            ctx.block(ctx.axis(out, axis), f"{ctx.where()}: its size comes from a shape computed at run time")


def _rewrite_sizes(ctx: RewriteContext, input_index: int, out, positions: dict[int, int]) -> None:
    """Write the pruned sizes of ``out``'s axes into the constant entries of the shape input."""
    for axis, position in positions.items():
        if len(ctx.removed(out, axis)):
            source = trace_shape_element(ctx, ctx.input(input_index), position)
            if isinstance(source, int) and source not in (1, -1):
                ctx.set_shape_value(input_index, position, ctx.new_size(out, axis))


@register("ConstantOfShape")
class ConstantOfShapeHandler(OpHandler):
    """Y = fill(shape): Y's sizes live in the shape input and are rewritten."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        out = ctx.output(0)
        _couple_sizes(ctx, ctx.input(0), out, {a: a for a in range(ctx.rank(out))})

    def rewrite(self, node, ctx: RewriteContext) -> None:
        out = ctx.output(0)
        _rewrite_sizes(ctx, 0, out, {a: a for a in range(ctx.rank(out))})


@register("Expand")
class ExpandHandler(OpHandler):
    """Y = broadcast(X, shape): axes X already has are coupled; broadcast axes take their size from ``shape``."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, shape, y = ctx.input(0), ctx.input(1), ctx.output(0)
        out_rank, x_shape = ctx.rank(y), ctx.shape(x)
        lead = out_rank - len(x_shape)
        shape_lead = out_rank - ctx.shape(shape)[0]
        for axis in range(out_rank):
            if axis >= lead and x_shape[axis - lead] != 1:
                ctx.identity(ctx.axis(x, axis - lead), ctx.axis(y, axis))
            elif axis >= shape_lead:
                _couple_sizes(ctx, shape, y, {axis: axis - shape_lead})

    def rewrite(self, node, ctx: RewriteContext) -> None:
        y = ctx.output(0)
        shape_lead = ctx.rank(y) - ctx.shape(ctx.input(1))[0]
        _rewrite_sizes(ctx, 1, y, {a: a - shape_lead for a in range(shape_lead, ctx.rank(y))})


@register("Gather")
class GatherHandler(OpHandler):
    """Y = take(data, indices, axis): data's other axes pass through; the gathered axis picks fixed indices, so
    it cannot lose entries (blocked); the indices' axes are batch/sequence axes. A constant scalar index picks one
    entry of an activation (unbind: q, k, v of a packed projection; a class token): that axis enumerates parts,
    it is no channel axis, so a Reshape that made it ([3E] -> [3, E]) lets E carry the pruning."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        data, indices, y = ctx.input(0), ctx.input(1), ctx.output(0)
        rank = ctx.rank(data)
        gather_axis = int(ctx.attr("axis", 0)) % rank
        n_idx = ctx.rank(indices)
        ctx.block(ctx.axis(data, gather_axis), f"{ctx.where()} selects fixed indices along this axis")
        if n_idx == 0 and ctx.is_constant(indices) and not ctx.is_constant(data):
            ctx.nonchannel(ctx.axis(data, gather_axis))  # one entry picked (q, k or v of a packed projection)
        for axis in range(rank):
            if axis < gather_axis:
                ctx.identity(ctx.axis(data, axis), ctx.axis(y, axis))
            elif axis > gather_axis:
                ctx.identity(ctx.axis(data, axis), ctx.axis(y, axis - 1 + n_idx))
        for axis in range(n_idx):
            ctx.identity(ctx.axis(indices, axis), ctx.axis(y, gather_axis + axis))
            ctx.nonchannel(ctx.axis(indices, axis))
        if ctx.is_constant(data) and gather_axis == 0 and rank == 2:
            ctx.producer(ctx.axis(data, 1))
