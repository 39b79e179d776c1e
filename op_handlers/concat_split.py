"""Concat, Split and Slice: offsets along one axis, identity along the others."""

from __future__ import annotations

import numpy as np
from onnxprune.op_handlers.common import axes_argument, is_static, trace_shape_element

from onnxprune.handlers import AnalysisContext, OpHandler, RewriteContext, register


def _couple_offsets(ctx: AnalysisContext, whole, parts, axis: int) -> None:
    """Part k covers indices [offset_k, offset_k + size_k) of ``whole`` along ``axis``; other axes are shared (by
    every part, also after a part of dynamic size along ``axis``, from which on offsets are unknown: blocked)."""
    offset = 0
    for part in parts:
        size = ctx.size(part, axis)
        for other in range(ctx.rank(part)):
            if other != axis:
                ctx.identity(ctx.axis(part, other), ctx.axis(whole, other))
        if size is None or offset is None:
            if offset is not None:
                ctx.block(ctx.axis(whole, axis), f"{ctx.where()}: part '{part.name}' has a dynamic size along "
                          f"axis {axis}")
            offset = None
            continue
        ctx.couple(ctx.axis(part, axis), ctx.axis(whole, axis), np.arange(size), offset + np.arange(size))
        offset += size


@register("Concat")
class ConcatHandler(OpHandler):
    """Y = concat(X_0, X_1, ..., axis): input k is the slice [offset_k, offset_k + size_k) of Y."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        y = ctx.output(0)
        axis = int(ctx.attr("axis")) % ctx.rank(y)
        _couple_offsets(ctx, y, [t for t in node.inputs if t.name and ctx.numel(t) != 0], axis)


@register("Split")
class SplitHandler(OpHandler):
    """Y_0, Y_1, ... = split(X, axis, sizes): sizes (attribute before opset 13, input after, or equal parts)
    are rewritten to the pruned outputs' sizes."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x = ctx.input(0)
        axis = int(ctx.attr("axis", 0)) % ctx.rank(x)
        _couple_offsets(ctx, x, [t for t in node.outputs], axis)

    def rewrite(self, node, ctx: RewriteContext) -> None:
        x = ctx.input(0)
        axis = int(ctx.attr("axis", 0)) % ctx.rank(x)
        sizes = np.array([ctx.new_size(out, axis) for out in node.outputs], dtype=np.int64)
        if ctx.opset() < 13:
            ctx.set_attr("split", [int(s) for s in sizes])
        else:
            ctx.remove_attr("num_outputs")  # opset 18 equal parts: the sizes input says it all
            ctx.set_input_values(1, sizes)


@register("Slice")
class SliceHandler(OpHandler):
    """Y = X[starts:ends:steps] on ``axes``: a unit-step slice maps Y index i to X index start + i; a strided
    slice on an axis blocks it. Bounds are rewritten so the slice keeps exactly the surviving entries."""

    def _bounds(self, node, ctx, size_of) -> list[tuple[int, int, int, int]] | None:
        """(axis, start, end, step) per sliced axis, normalised against sizes from ``size_of(axis)``."""
        x = ctx.input(0)
        if ctx.opset() < 10:
            starts, ends = ctx.attr("starts"), ctx.attr("ends")
            axes = ctx.attr("axes", list(range(len(starts))))
            steps = [1] * len(starts)
        else:
            starts, ends = ctx.const(ctx.input(1)), ctx.const(ctx.input(2))
            if starts is not None and ends is None:  # ends read by Shape (TorchScript's scatter_add: src[:Shape(i)])
                ends = [_shape_read_end(ctx, ctx.input(2), k) for k in range(len(starts))]
            if starts is None or ends is None or None in list(ends):
                return None
            axes = axes_argument(ctx, 3)
            axes = list(range(len(starts))) if axes is None else axes
            steps = ctx.const(ctx.input(4)) if ctx.input(4) is not None else np.ones(len(starts), dtype=np.int64)
            if steps is None:
                return None
        result = []
        for start, end, axis, step in zip(starts, ends, axes, steps):
            axis = int(axis) % ctx.rank(x)
            size = size_of(axis)
            if size is None:
                result.append((axis, 0, 0, int(step)))
                continue
            start, end, _ = slice(int(start), int(end), int(step)).indices(size)
            result.append((axis, start, end, int(step)))
        return result

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        try:
            bounds = self._bounds(node, ctx, lambda axis: ctx.size(x, axis))
        except ValueError as exc:
            ctx.block_all(str(exc))
            return
        if bounds is None:
            self._runtime_bounds(ctx, x, y)
            return
        for k, (axis, *_) in enumerate(bounds if ctx.opset() >= 10 and ctx.const(ctx.input(2)) is None else ()):
            ctx.identity(ctx.axis(*trace_shape_element(ctx, ctx.input(2), k)), ctx.axis(x, axis))  # read by Shape
        sliced = {b[0]: b for b in bounds}
        for axis in range(ctx.rank(x)):
            if axis not in sliced:
                ctx.identity(ctx.axis(x, axis), ctx.axis(y, axis))
                continue
            _, start, end, step = sliced[axis]
            if not is_static(ctx.shape(x)[axis]):
                continue
            if step != 1:
                ctx.block(ctx.axis(x, axis), f"{ctx.where()} takes every {step}-th entry of this axis")
                ctx.block(ctx.axis(y, axis), f"{ctx.where()} takes every {step}-th entry of this axis")
                continue
            n = max(0, end - start)
            ctx.couple(ctx.axis(x, axis), ctx.axis(y, axis), start + np.arange(n), np.arange(n))

    @staticmethod
    def _runtime_bounds(ctx: AnalysisContext, x, y) -> None:
        """Bounds computed at run time on constant axes (rotate_half after onnxruntime's optimizer:
        ``q[..., Shape(q)[3] / 2:]``): the sliced axes are blocked, the others map one to one."""
        reason = "Slice bounds are computed at run time"
        count = ctx.numel(ctx.input(1)) if ctx.opset() >= 10 else None
        axes = axes_argument(ctx, 3) if count is not None else None
        if count is None or (axes is not None and len(axes) != count):
            ctx.block_all(reason)
            return
        sliced = {int(a) % ctx.rank(x) for a in (range(count) if axes is None else axes)}
        for axis in range(ctx.rank(x)):
            if axis in sliced:
                for tensor in (x, y):
                    ctx.block(ctx.axis(tensor, axis), f"{reason} ({ctx.where()})")
            else:
                ctx.identity(ctx.axis(x, axis), ctx.axis(y, axis))

    def rewrite(self, node, ctx: RewriteContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        bounds = self._bounds(node, ctx, lambda axis: ctx.old_size(x, axis) or ctx.size(x, axis))
        if bounds is None:  # bounds computed at run time: only axes it does not slice were pruned
            return
        if ctx.opset() < 10:
            starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
        else:
            starts, ends = ctx.const(ctx.input(1)).tolist(), ctx.const(ctx.input(2))
            ends = ends.tolist() if ends is not None else [0] * len(starts)  # read by Shape: not written
        for k, (axis, start, _end, _step) in enumerate(bounds):
            removed = ctx.removed(x, axis)
            if len(removed):  # only unit-step slices of static axes are coupled; other bounds stay as written
                starts[k] = start - int(np.sum(removed < start))
                ends[k] = starts[k] + ctx.new_size(y, axis)
        if ctx.opset() < 10:
            ctx.set_attr("starts", starts)
            ctx.set_attr("ends", ends)
        else:
            dtype = ctx.const(ctx.input(1)).dtype
            ctx.set_input_values(1, np.array(starts, dtype=dtype))
            if ctx.const(ctx.input(2)) is not None:  # ends read by Shape follow the pruned axis by themselves
                ctx.set_input_values(2, np.array(ends, dtype=dtype))


def _sliced_axis(ctx, k: int) -> int:
    """The axis of X that bound ``k`` slices."""
    axes = axes_argument(ctx, 3)
    return int(axes[k] if axes is not None else k) % ctx.rank(ctx.input(0))


def _shape_read_end(ctx, ends, k: int) -> int | None:
    """End ``k`` when Shape reads it from an axis of the same size as the sliced one (a slice to the whole axis,
    which stays whole: the two axes are coupled), else None."""
    source = trace_shape_element(ctx, ends, k)
    axis = _sliced_axis(ctx, k)
    if not isinstance(source, tuple) or ctx.shape(source[0])[source[1]] != ctx.shape(ctx.input(0))[axis]:
        return None
    size = ctx.size(ctx.input(0), axis)
    return size if size is not None else np.iinfo(np.int64).max

