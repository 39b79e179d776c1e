"""Conv and ConvTranspose: output channels follow weight rows, input channels weight columns.

Grouped convs (1 < group, several channels per group) are pruned uniformly: within-group position r is removed
from every group at once, so ``group`` stays valid. Depthwise-style convs (one input channel per group) couple
each input channel with its own output channels and lose whole groups; ``group`` is rewritten.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.handler import AnalysisContext, OpHandler, RewriteContext, ShapeView, register

# onnxruntime's CPU kernels (NCHWc) leave the fast path for depthwise convs whose channel count is not a multiple
# of 4 and grouped convs whose per-group count is not a multiple of 16 (measured: pruned MobileNets ran up to 2.3x
# slower than the originals); selection rounds kept counts to these by default.
DEPTHWISE_MULTIPLE = 8
GROUPED_MULTIPLE = 16


def _spatial(ctx: ShapeView, tensor: gs.Tensor) -> range:
    return range(2, ctx.rank(tensor))


def _static_prod(dims) -> int:
    return int(np.prod([d for d in dims if isinstance(d, (int, np.integer))]))


@register("Conv")
class ConvHandler(OpHandler):
    """Y[N, Cout, ...] = X[N, Cin, ...] * W[Cout, Cin/group, k...] + B[Cout]."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, w, b, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
        if ctx.const(w) is None:
            ctx.block_all("Conv weight is not a constant")
            return
        ctx.nonchannel_tensor(x, [0, *_spatial(ctx, x)])
        ctx.nonchannel_tensor(y, [0, *_spatial(ctx, y)])
        w_out, w_in, y_ch, x_ch = ctx.axis(w, 0), ctx.axis(w, 1), ctx.axis(y, 1), ctx.axis(x, 1)
        ctx.producer(w_out)
        ctx.identity(w_out, y_ch)
        if b is not None:
            ctx.identity(ctx.axis(b, 0), y_ch)
        group = int(ctx.attr("group", 1))
        cout, per_group_in = ctx.shape(w)[0], ctx.shape(w)[1]
        if group == 1:
            ctx.identity(x_ch, w_in)
        elif per_group_in == 1:
            per_group_out = cout // group
            ctx.couple(x_ch, w_out, np.repeat(np.arange(group), per_group_out), np.arange(cout))
            ctx.prefer_multiple(x_ch, DEPTHWISE_MULTIPLE)
        else:
            cin = group * per_group_in
            ctx.couple(x_ch, w_in, np.arange(cin), np.arange(cin) % per_group_in)
            ctx.couple(w_out, w_out, np.arange(cout), np.arange(cout) % (cout // group))
            ctx.prefer_multiple(w_in, GROUPED_MULTIPLE)
            ctx.prefer_multiple(w_out, GROUPED_MULTIPLE * group)

    def rewrite(self, node, ctx: RewriteContext) -> None:
        w = ctx.input(1)
        group = int(ctx.attr("group", 1))
        if group > 1 and ctx.shape(w)[1] == 1:
            node.attrs["group"] = ctx.new_size(ctx.input(0), 1)

    def macs(self, node, ctx: ShapeView) -> int:
        w, y = ctx.shape(ctx.input(1)), ctx.shape(ctx.output(0))
        return _static_prod(y[1:]) * _static_prod(w[1:])


@register("ConvTranspose")
class ConvTransposeHandler(OpHandler):
    """Y[N, Cout, ...] = X[N, Cin, ...] (*)^T W[Cin, Cout/group, k...] + B[Cout]."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, w, b, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
        if ctx.const(w) is None:
            ctx.block_all("ConvTranspose weight is not a constant")
            return
        ctx.nonchannel_tensor(x, [0, *_spatial(ctx, x)])
        ctx.nonchannel_tensor(y, [0, *_spatial(ctx, y)])
        w_in, w_out, y_ch, x_ch = ctx.axis(w, 0), ctx.axis(w, 1), ctx.axis(y, 1), ctx.axis(x, 1)
        ctx.producer(w_out)
        ctx.identity(x_ch, w_in)
        if b is not None:
            ctx.identity(ctx.axis(b, 0), y_ch)
        group = int(ctx.attr("group", 1))
        cin, per_group_out = ctx.shape(w)[0], ctx.shape(w)[1]
        if group == 1:
            ctx.identity(w_out, y_ch)
            return
        cout = group * per_group_out
        per_group_in = cin // group
        if per_group_in == 1:
            ctx.couple(x_ch, y_ch, np.repeat(np.arange(group), per_group_out), np.arange(cout))
        else:
            ctx.couple(y_ch, w_out, np.arange(cout), np.arange(cout) % per_group_out)
            ctx.couple(w_in, w_in, np.arange(cin), np.arange(cin) % per_group_in)

    def rewrite(self, node, ctx: RewriteContext) -> None:
        group = int(ctx.attr("group", 1))
        if group > 1 and ctx.old_size(ctx.input(1), 0) == group:
            node.attrs["group"] = ctx.new_size(ctx.input(0), 1)

    def macs(self, node, ctx: ShapeView) -> int:
        x, w = ctx.shape(ctx.input(0)), ctx.shape(ctx.input(1))
        return _static_prod(x[1:]) * _static_prod(w[1:])
