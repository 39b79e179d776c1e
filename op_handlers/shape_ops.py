"""Ops that read or build shapes: Shape/Size (read at run time, nothing to couple), ConstantOfShape and Expand
(sizes held in a shape tensor, rewritten after pruning), Gather (embedding tables, indexing)."""

from __future__ import annotations

import numpy as np

from onnxprune.handler import AnalysisContext, OpHandler, RewriteContext, ShapeView, register
from op_handlers.common import is_static, trace_shape_element


@register("Shape", "Size")
class ShapeReadHandler(OpHandler):
    """Shape(X) is computed at run time, so it follows whatever X becomes: no coupling, no block. Size(X) is a
    value (an element count, as in a hand-written mean) that pruning any axis changes: not mask-exact."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        if node.op == "Size":
            x = ctx.input(0)
            for axis in range(ctx.rank(x)):
                ctx.inexact(ctx.axis(x, axis), f"{ctx.where()} counts the elements of this axis")

    def dim_source(self, node, ctx, position):
        """Shape(X, start, end)[p] is the size of X's axis start + p."""
        if node.op != "Shape":
            return None
        rank = ctx.rank(ctx.input(0))
        start = int(ctx.attr("start", 0))
        return (start + rank if start < 0 else start) + position

    def static_value(self, node, ctx):
        """Shape (with start/end) or Size of dims that are all static."""
        shape = ctx.shape(ctx.input(0))
        if node.op == "Size":
            return np.array(np.prod(shape), dtype=np.int64) if all(map(is_static, shape)) else None
        dims = shape[slice(int(ctx.attr("start", 0)), ctx.attr("end"))]
        return np.array(dims, dtype=np.int64) if all(map(is_static, dims)) else None


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

    def complete_shape(self, node, ctx):
        """Broadcast X's shape with the shape input's elements where ONNX inference gives up (TorchScript writes
        ``expand(n, -1, -1)`` as a computed Where): an X dim other than 1 wins, else the traced element does."""
        x, shape, y = ctx.input(0), ctx.input(1), ctx.output(0)
        count = ctx.numel(shape)
        if count is None or y.shape is None or len(y.shape) != max(count, ctx.rank(x)):
            return None
        x_shape = ctx.shape(x)
        dims = []
        for axis in range(len(y.shape)):
            x_dim = x_shape[axis - len(y.shape) + len(x_shape)] if axis >= len(y.shape) - len(x_shape) else 1
            source = trace_shape_element(ctx, shape, axis - len(y.shape) + count) \
                if axis >= len(y.shape) - count else 1
            if is_static(x_dim) and x_dim != 1 or source == 1:
                dims.append(x_dim)
            elif isinstance(source, tuple):
                dims.append(ctx.shape(source[0])[source[1]])
            elif isinstance(source, int) and source > 1 and x_dim == 1:
                dims.append(source)
            else:
                dims.append(y.shape[axis])
        return dims

    def rewrite(self, node, ctx: RewriteContext) -> None:
        y = ctx.output(0)
        shape_lead = ctx.rank(y) - ctx.shape(ctx.input(1))[0]
        _rewrite_sizes(ctx, 1, y, {a: a - shape_lead for a in range(shape_lead, ctx.rank(y))})


@register("Gather")
class GatherHandler(OpHandler):
    """Y = take(data, indices, axis): data's other axes pass through; the gathered axis picks fixed indices, so
    it cannot lose entries (blocked); the indices' axes are batch/sequence axes."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        data, indices, y = ctx.input(0), ctx.input(1), ctx.output(0)
        rank = ctx.rank(data)
        gather_axis = int(ctx.attr("axis", 0)) % rank
        n_idx = ctx.rank(indices)
        ctx.block(ctx.axis(data, gather_axis), f"{ctx.where()} selects fixed indices along this axis")
        for axis in range(rank):
            if axis < gather_axis:
                ctx.identity(ctx.axis(data, axis), ctx.axis(y, axis))
            elif axis > gather_axis:
                ctx.identity(ctx.axis(data, axis), ctx.axis(y, axis - 1 + n_idx))
        for axis in range(n_idx):
            ctx.identity(ctx.axis(indices, axis), ctx.axis(y, gather_axis + axis))
            ctx.nonchannel(ctx.axis(indices, axis))
        if ctx.const(data) is not None and gather_axis == 0 and rank == 2:
            ctx.producer(ctx.axis(data, 1))

    def static_value(self, node, ctx):
        """Gather of static dims out of Shape(X) by constant indices (X's other dims may be dynamic): folded, so
        that arithmetic on them (GQA's ``num_kv_heads * n_rep``) folds too and stays rewritable."""
        data, indices = ctx.input(0), ctx.const(ctx.input(1))
        producer = data.inputs[0] if data.inputs else None
        if indices is None or producer is None or producer.op != "Shape" or int(ctx.attr("axis", 0)) != 0:
            return None
        view = ShapeView(producer)
        dims = view.shape(view.input(0))[slice(int(view.attr("start", 0)), view.attr("end"))]
        picked = [dims[int(i)] for i in indices.reshape(-1)]
        if not all(map(is_static, picked)):
            return None
        return np.array(picked, dtype=np.int64).reshape(indices.shape)

    def value_source(self, node, ctx, position):
        """Gather of a shape vector by constant indices: element p comes from data element indices[p]."""
        indices = ctx.const(ctx.input(1))
        if indices is None or int(ctx.attr("axis", 0)) != 0 or ctx.rank(ctx.input(0)) != 1:
            return None
        return (0, int(np.asarray(indices).reshape(-1)[position]))
