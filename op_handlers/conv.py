"""Conv and ConvTranspose: output channels follow weight rows, input channels weight columns.

Grouped convs (1 < group, several channels per group) are pruned uniformly: within-group position r is removed
from every group at once, so ``group`` stays valid. Depthwise-style convs (one input channel per group) couple
each input channel with its own output channels and lose whole groups; ``group`` is rewritten.
"""

from __future__ import annotations

import numpy as np
from onnxprune.op_handlers.common import static_product

from onnxprune.handlers import AnalysisContext, OpHandler, RewriteContext, ShapeView, register

# onnxruntime's CPU kernels (NCHWc) leave the fast path for depthwise convs whose channel count is not a multiple
# of 4 and grouped convs whose per-group count is not a multiple of 16 (measured: pruned MobileNets ran up to 2.3x
# slower than the originals); selection rounds kept counts to these by default.
DEPTHWISE_MULTIPLE = 8
GROUPED_MULTIPLE = 16


def _prologue(node, ctx: AnalysisContext, out_axis_of_w: int, inputs: tuple = (0, 1, 2)):
    """What Conv and ConvTranspose share: a weight of static shape (a constant, or computed from one, as
    DequantizeLinear of a quantized weight), batch/spatial axes, the bias, the producer axis. ``inputs``: the
    positions of x, w and the bias (None: no bias), which quantized convs place elsewhere.
    Returns (x, w, y, x channel axis, y channel axis) or None when the node is blocked."""
    x, w, y = ctx.input(inputs[0]), ctx.input(inputs[1]), ctx.output(0)
    b = ctx.input(inputs[2]) if inputs[2] is not None else None
    if ctx.numel(w) is None:
        ctx.block_all(f"{node.op} weight has no static shape")
        return None
    for tensor in (x, y):
        ctx.nonchannel_tensor(tensor, [0, *range(2, ctx.rank(tensor))])
    x_ch, y_ch = ctx.axis(x, 1), ctx.axis(y, 1)
    ctx.producer(ctx.axis(w, out_axis_of_w))
    if b is not None:
        ctx.identity(ctx.axis(b, 0), y_ch)
    return x, w, y, x_ch, y_ch


@register("Conv")
class ConvHandler(OpHandler):
    """Y[N, Cout, ...] = X[N, Cin, ...] * W[Cout, Cin/group, k...] + B[Cout]. Subclasses for quantized convs set
    where x, w and the bias are among the inputs."""

    inputs: tuple = (0, 1, 2)  # x, w, bias (None: the op has no bias)

    def analyse(self, node, ctx: AnalysisContext) -> None:
        found = _prologue(node, ctx, out_axis_of_w=0, inputs=self.inputs)
        if found is None:
            return
        x, w, y, x_ch, y_ch = found
        w_out, w_in = ctx.axis(w, 0), ctx.axis(w, 1)
        ctx.identity(w_out, y_ch)
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
        w = ctx.input(self.inputs[1])
        group = int(ctx.attr("group", 1))
        if group > 1 and ctx.shape(w)[1] == 1:
            ctx.set_attr("group", ctx.new_size(ctx.input(self.inputs[0]), 1))

    def macs(self, node, ctx: ShapeView) -> int:
        w, y = ctx.shape(ctx.input(self.inputs[1])), ctx.shape(ctx.output(0))
        return static_product(y[1:]) * static_product(w[1:])


@register("ConvTranspose")
class ConvTransposeHandler(OpHandler):
    """Y[N, Cout, ...] = X[N, Cin, ...] (*)^T W[Cin, Cout/group, k...] + B[Cout]."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        found = _prologue(node, ctx, out_axis_of_w=1)
        if found is None:
            return
        x, w, y, x_ch, y_ch = found
        w_in, w_out = ctx.axis(w, 0), ctx.axis(w, 1)
        ctx.identity(x_ch, w_in)
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
            ctx.set_attr("group", ctx.new_size(ctx.input(0), 1))

    def macs(self, node, ctx: ShapeView) -> int:
        x, w = ctx.shape(ctx.input(0)), ctx.shape(ctx.input(1))
        return static_product(x[1:]) * static_product(w[1:])
