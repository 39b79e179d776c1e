"""Helpers shared by several handlers: broadcasting, reshape factoring, axis lists from attributes or inputs."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.handlers import AnalysisContext, ShapeView
from onnxprune.ir.shape_values import trace_shape_element  # noqa: F401  (re-exported for the families)
from onnxprune.ir.shape_view import is_static, static_product  # noqa: F401  (re-exported for the families)


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


def _blocks(a: list, b: list) -> list[tuple[list[int], list[int]]] | None:
    """Split two shapes of equal element count into minimal runs of dims with equal products.

    Size-1 dims form their own runs; a dynamic dim must face a dynamic dim. Consecutive dynamic dims that face a
    different number of dynamic dims ([B, C, H, W] -> [B, C, H*W], dynamic H/W) form one run: sound when there is
    only one such run, since the static runs around it align, so its products agree by the element count. None if
    the shapes cannot be aligned.
    """
    i = j = 0
    runs = []
    merged_dynamic = 0
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
            ia, jb = _dynamic_run(a, i), _dynamic_run(b, j)
            if len(ia) == len(jb) or a[i] == b[j]:
                ia, jb = [i], [j]
            else:
                merged_dynamic += 1
                if merged_dynamic > 1:
                    return None
            runs.append((ia, jb))
            i, j = ia[-1] + 1, jb[-1] + 1
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


def _dynamic_run(shape: list, start: int) -> list[int]:
    """Indices of the consecutive dynamic dims of ``shape`` from ``start`` on."""
    end = start
    while end < len(shape) and not is_static(shape[end]):
        end += 1
    return list(range(start, end))


def _blocks_merging_dynamic(a: list, b: list) -> list[tuple[list[int], list[int]]] | None:
    """Runs for reshapes that merge or split dynamic dims ([B, T, 32] -> [B*T, 32], as GPT-2's Conv1D writes its
    Gemm): the leading dims, dynamic ones among them, form one run; the longest static tails that align follow."""
    tail_a = next((k for k in range(len(a)) if all(is_static(d) for d in a[k:])), len(a))
    tail_b = next((k for k in range(len(b)) if all(is_static(d) for d in b[k:])), len(b))
    for start_a in range(tail_a, len(a) + 1):
        for start_b in range(tail_b, len(b) + 1):
            if start_a == 0 or start_b == 0 or np.prod(a[start_a:]) != np.prod(b[start_b:]):
                continue
            runs = _blocks(a[start_a:], b[start_b:])
            if runs is not None:
                return [(list(range(start_a)), list(range(start_b)))] + [
                    ([i + start_a for i in ia], [j + start_b for j in jb]) for ia, jb in runs]
    return None


def couple_reshape(ctx: AnalysisContext, src: gs.Tensor, dst: gs.Tensor) -> None:
    """Couple the axes of a reshaped tensor (Reshape, Flatten, Squeeze, Unsqueeze).

    Dims that stay whole are the same axis. Where dims are split or merged, both sides are cut into their common
    refinement of factors (e.g. [16, 32, 32] -> [4, 4096] into 4 x 4 x 32 x 32), and one factor carries the
    pruning: the one the analysis' factor policy picks among factors that no batch/spatial axis contains. Index q
    of every axis holding that factor is coupled by q's coordinate on it, so pruning coordinate c removes every
    index whose coordinate is c; axes without that factor keep their size (blocked).
    """
    a, b = ctx.shape(src), ctx.shape(dst)
    policy = ctx.options.factor_policy
    if ctx.options.repeat_policy and src.inputs and src.inputs[0].op == "Expand":
        policy = ctx.options.repeat_policy
    runs = _blocks(a, b)
    if runs is None and _couple_packed(ctx, src, dst, a, b, policy):
        return
    runs = runs or _blocks_merging_dynamic(a, b)
    if runs is None:
        reason = f"{ctx.where()} reshapes {a} -> {b}, which mixes axes in a way that cannot be factored"
        ctx.block_tensor(src, reason)
        ctx.block_tensor(dst, reason)
        return
    for ia, jb in runs:
        axes = [(ctx.axis(src, i), a[i]) for i in ia if a[i] != 1] + [(ctx.axis(dst, j), b[j]) for j in jb if b[j] != 1]
        if len(ia) == 1 and len(jb) == 1:
            ctx.identity(axes[0][0], axes[1][0])
        elif any(not is_static(size) for _, size in axes):
            for axis, size in axes:
                if is_static(size):
                    ctx.block(axis, f"{ctx.where()} merges this axis with dynamic (batch/sequence) dims")
        elif axes:
            _couple_factored(ctx, axes, sum(1 for i in ia if a[i] != 1), policy)


def _packing(a: list, b: list) -> tuple[int, int, bool, list[tuple[int, bool]], list] | None:
    """How ``b``'s one dynamic dim packs ``a``'s one dynamic dim D with a static factor k (``a`` = [12, B, 32] ->
    ``b`` = [12, B*4, 8]: k = 4, element counts force it): (position in b, k, inner, where each dim of the
    expanded ``b`` comes from as (b position, is the factor), the runs of ``a`` against the expanded ``b``). None
    when the dims do not pack that way, or pack both ways (inner and outer) so that the order is unknown."""
    dyn_a = [i for i, d in enumerate(a) if not is_static(d)]
    dyn_b = [j for j, d in enumerate(b) if not is_static(d)]
    if len(dyn_a) != 1 or len(dyn_b) != 1 or a[dyn_a[0]] == b[dyn_b[0]]:
        return None
    pa, pb = static_product(a), static_product(b)
    if pb == 0 or pa % pb or pa // pb < 2:
        return None
    j, factor, found = dyn_b[0], pa // pb, []
    for inner in (True, False):
        pair = [(j, False), (j, True)] if inner else [(j, True), (j, False)]
        origin = [(k, False) for k in range(j)] + pair + [(k, False) for k in range(j + 1, len(b))]
        expanded = [a[dyn_a[0]] if not f and k == j else (factor if f else b[k]) for k, f in origin]
        runs = _blocks(a, expanded)
        if runs is not None:
            found.append((j, factor, inner, origin, runs))
    return found[0] if len(found) == 1 else None


def _couple_packed(ctx: AnalysisContext, src: gs.Tensor, dst: gs.Tensor, a: list, b: list, policy: str) -> bool:
    """Reshapes that fold a static factor into a dynamic dim, or split it out again (attention heads moved into the
    batch: [T, B, E] -> [T, B*heads, hd] -> ... -> [B, heads, T, hd]). The factor gets a packed axis
    (``AnalysisContext.pack``) that stands for it while it rides in the dynamic dim; returns False when neither
    side packs the other (the caller couples as usual)."""
    for x, y, sx, sy, merging in ((src, dst, a, b, True), (dst, src, b, a, False)):
        packing = _packing(sx, sy)
        if packing is None:
            continue
        j, factor, inner, origin, runs = packing
        dyn = ctx.axis(y, j)
        if merging:
            virtual = ctx.pack(dyn, factor, inner)
        else:
            known = ctx.packed(dyn)
            if known is None or known[:2] != (factor, inner):
                return False  # nothing says which factor rides in this dim: couple (and block) as usual
            virtual = known[2]
        for ia, jb in runs:
            axes = [(ctx.axis(x, i), sx[i]) for i in ia if sx[i] != 1]
            for k in jb:
                pos, is_factor = origin[k]
                if is_factor:
                    axes.append((virtual, factor))
                elif is_static(sy[pos]) and sy[pos] != 1:
                    axes.append((ctx.axis(y, pos), sy[pos]))
            if any(not is_static(size) for _, size in axes) or not axes:
                continue  # the dynamic dim D and its counterpart: nothing to couple
            n_left = sum(1 for i in ia if sx[i] != 1)
            if len(axes) == 2 and n_left == 1:
                ctx.identity(axes[0][0], axes[1][0])
            elif n_left and len(axes) > n_left:
                _couple_factored(ctx, axes, n_left, policy)
        return True
    return False


def _refine(left: list[int], right: list[int]) -> list[int] | None:
    """Common refinement of two factorisations of the same number, or None if their cuts do not nest."""
    cuts = sorted(set(np.cumprod(left).tolist()) | set(np.cumprod(right).tolist()))
    factors, prev = [], 1
    for cut in cuts:
        if cut % prev:
            return None
        factors.append(cut // prev)
        prev = cut
    return factors


def _couple_factored(ctx: AnalysisContext, axes: list, n_left: int, policy: str) -> None:
    sizes = [size for _, size in axes]
    factors = _refine(sizes[:n_left], sizes[n_left:])
    reason = f"{ctx.where()} regroups dims {sizes[:n_left]} into {sizes[n_left:]}"
    if factors is None:
        for axis, _ in axes:
            ctx.block(axis, reason + " in a way that cannot be factored")
        return
    bounds = np.concatenate([[1], np.cumprod(factors)])
    spans = []  # per axis: (first factor, one past last factor)
    for side in (sizes[:n_left], sizes[n_left:]):
        prefix = np.concatenate([[1], np.cumprod(side)])
        for lo, hi in zip(prefix[:-1], prefix[1:]):
            spans.append((int(np.searchsorted(bounds, lo)), int(np.searchsorted(bounds, hi))))
    holders = [[k for k, (s, e) in enumerate(spans) if s <= f < e] for f in range(len(factors))]
    candidates = [f for f in range(len(factors)) if factors[f] > 1
                  and not any(ctx.is_nonchannel(axes[k][0]) for k in holders[f])]
    if not candidates:
        for axis, _ in axes:
            ctx.block(axis, reason + " together with batch/spatial dims")
        return
    chosen = {"leading": candidates[0], "trailing": candidates[-1]}.get(
        policy, max(candidates, key=lambda f: (factors[f], f)))
    anchor = holders[chosen][0]
    anchor_stride = int(np.prod(factors[chosen + 1:spans[anchor][1]]))
    for k, (axis, size) in enumerate(axes):
        if k not in holders[chosen]:
            ctx.block(axis, reason + f"; this part keeps its size (factor {factors[chosen]} carries pruning)")
            continue
        stride = int(np.prod(factors[chosen + 1:spans[k][1]]))
        q = np.arange(size)
        ctx.couple(axis, axes[anchor][0], q, (q // stride) % factors[chosen] * anchor_stride)
