"""Helpers shared by several handlers: broadcasting, reshape factoring, axis lists from attributes or inputs."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.handler import AnalysisContext, ShapeView


def is_static(dim) -> bool:
    """Whether a shape entry is a known non-negative integer."""
    return isinstance(dim, (int, np.integer)) and dim >= 0


def couple_broadcast(ctx: AnalysisContext, inputs: list[gs.Tensor], output: gs.Tensor) -> None:
    """Numpy broadcasting: an input axis of the same size as the output axis it aligns with is the same axis;
    size-1 (broadcast) axes are not coupled."""
    out_shape = ctx.shape(output)
    for tensor in inputs:
        shape = ctx.shape(tensor)
        lead = len(out_shape) - len(shape)
        for axis, dim in enumerate(shape):
            out_dim = out_shape[axis + lead]
            if dim == 1 and out_dim != 1:
                continue
            ctx.identity(ctx.axis(tensor, axis), ctx.axis(output, axis + lead))


def couple_identity_all(ctx: AnalysisContext, src: gs.Tensor, dst: gs.Tensor) -> None:
    """Couple every axis of ``src`` with the same axis of ``dst`` (elementwise unary ops)."""
    for axis in range(ctx.rank(src)):
        ctx.identity(ctx.axis(src, axis), ctx.axis(dst, axis))


def axes_argument(ctx: ShapeView, input_index: int, attr: str = "axes") -> list[int] | None:
    """Axes given as attribute (older opsets) or as a constant input (newer); None if absent.

    Raises ValueError when the axes input is computed at run time."""
    if attr in ctx.node.attrs:
        return [int(a) for a in ctx.node.attrs[attr]]
    tensor = ctx.input(input_index)
    if tensor is None:
        return None
    values = ctx.const(tensor)
    if values is None:
        raise ValueError(f"'{attr}' input '{tensor.name}' is computed at run time")
    return [int(a) for a in values.reshape(-1)]


def shape_value(ctx: ShapeView, tensor: gs.Tensor, position: int) -> int | None:
    """Element ``position`` of a 1-D shape-like tensor if it can be traced to a constant, else None."""
    from onnxprune.handler import handler_for

    while True:
        values = ctx.const(tensor)
        if values is not None:
            return int(values.reshape(-1)[position])
        producer = tensor.inputs[0] if tensor.inputs else None
        handler = handler_for(producer) if producer is not None else None
        source = handler.value_source(producer, ShapeView(producer), position) if handler else None
        if source is None:
            return None
        tensor, position = producer.inputs[source[0]], source[1]


def _blocks(a: list, b: list) -> list[tuple[list[int], list[int]]] | None:
    """Split two shapes of equal element count into minimal runs of dims with equal products.

    Size-1 dims form their own runs; a dynamic dim must face a dynamic dim. None if the shapes cannot be aligned.
    """
    i = j = 0
    runs = []
    while i < len(a) or j < len(b):
        if i < len(a) and a[i] == 1:
            runs.append(([i], []))
            i += 1
            continue
        if j < len(b) and b[j] == 1:
            runs.append(([], [j]))
            j += 1
            continue
        if i >= len(a) or j >= len(b):
            return None
        if not is_static(a[i]) or not is_static(b[j]):
            if is_static(a[i]) or is_static(b[j]):
                return None
            runs.append(([i], [j]))
            i += 1
            j += 1
            continue
        ia, jb, pa, pb = [i], [j], a[i], b[j]
        i += 1
        j += 1
        while pa != pb:
            if pa < pb:
                if i >= len(a) or not is_static(a[i]):
                    return None
                pa *= a[i]
                ia.append(i)
                i += 1
            else:
                if j >= len(b) or not is_static(b[j]):
                    return None
                pb *= b[j]
                jb.append(j)
                j += 1
        runs.append((ia, jb))
    return runs


def couple_reshape(ctx: AnalysisContext, src: gs.Tensor, dst: gs.Tensor) -> None:
    """Couple the axes of a reshaped tensor (Reshape, Flatten, Squeeze, Unsqueeze).

    Dims that stay whole are the same axis. Where one axis is split into factors (or factors merged into one), only
    one factor can carry pruning: the one chosen by the analysis' factor policy among factors that are not batch/
    spatial axes. Index q of the merged axis is coupled with that factor's coordinate of q, so pruning factor
    index c removes the merged indices whose coordinate is c; the other factors are kept at their size (blocked).
    """
    a, b = ctx.shape(src), ctx.shape(dst)
    runs = _blocks(a, b)
    if runs is None:
        reason = f"{ctx.where()} reshapes {a} -> {b}, which mixes axes in a way that cannot be factored"
        ctx.block_tensor(src, reason)
        ctx.block_tensor(dst, reason)
        return
    for ia, jb in runs:
        ia = [i for i in ia if a[i] != 1]
        jb = [j for j in jb if b[j] != 1]
        if len(ia) == 1 and len(jb) == 1:
            ctx.identity(ctx.axis(src, ia[0]), ctx.axis(dst, jb[0]))
        elif len(ia) > 1 and len(jb) == 1:
            _couple_factors(ctx, ctx.axis(dst, jb[0]), [ctx.axis(src, i) for i in ia], [a[i] for i in ia])
        elif len(jb) > 1 and len(ia) == 1:
            _couple_factors(ctx, ctx.axis(src, ia[0]), [ctx.axis(dst, j) for j in jb], [b[j] for j in jb])
        elif ia and jb:
            reason = f"{ctx.where()} regroups dims {[a[i] for i in ia]} into {[b[j] for j in jb]}"
            for axis in [ctx.axis(src, i) for i in ia] + [ctx.axis(dst, j) for j in jb]:
                ctx.block(axis, reason)


def _couple_factors(ctx: AnalysisContext, merged, factors: list, sizes: list[int]) -> None:
    candidates = [k for k, axis in enumerate(factors) if not ctx.is_nonchannel(axis)]
    if not candidates or ctx.is_nonchannel(merged):
        return
    policy = ctx.options.factor_policy
    if policy == "leading":
        chosen = candidates[0]
    elif policy == "trailing":
        chosen = candidates[-1]
    else:
        chosen = max(candidates, key=lambda k: (sizes[k], k))
    stride = int(np.prod(sizes[chosen + 1:]))
    flat = np.arange(int(np.prod(sizes)))
    ctx.couple(merged, factors[chosen], flat, (flat // stride) % sizes[chosen])
    for k, axis in enumerate(factors):
        if k != chosen:
            ctx.block(axis, f"{ctx.where()} splits {merged} into factors {sizes}; factor {k} keeps its size")
