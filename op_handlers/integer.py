"""Integer-arithmetic convs and matmuls as onnxruntime's quantizer writes them: QLinearConv, ConvInteger,
QLinearMatMul, MatMulInteger. Channels couple exactly as in Conv and MatMul; a weight's per-axis scale and zero
point (1-D, one entry per output channel or column) follow that axis and are sliced with it; per-tensor ones
(scalars) couple nothing.

Y = sum_c (X[c] - x_zp)(W[c] - w_zp), requantized with the scales. Pruning input channel c drops its term. The
mask oracle zeroes the integer activation X[c], but 0 is not X's zero point, so ``oracle`` sets the weight's
entries for c to w_zp instead: the term is then exactly 0 and the integer sums, hence the requantized outputs, are
bit-identical to the pruned model's. When both operands are activations, neither can be neutralised that way:
such contractions are marked inexact.
"""

from __future__ import annotations

import numpy as np
from onnxprune.op_handlers.conv import ConvHandler
from onnxprune.op_handlers.linear import MatMulHandler

from onnxprune.handlers import AnalysisContext, OracleContext, register


def couple_scale(ctx: AnalysisContext, tensor, axis) -> bool:
    """Couple a per-axis scale or zero point (1-D) with ``axis``; a scalar couples nothing. Returns False (after
    blocking the node) for any other shape."""
    if tensor is None or ctx.numel(tensor) == 1:
        return True
    if ctx.rank(tensor) != 1:
        ctx.block_all(f"a {ctx.rank(tensor)}-D quantization scale or zero point ('{tensor.name}') is not supported")
        return False
    ctx.identity(ctx.axis(tensor, 0), axis)
    return True


def require_scalars(ctx: AnalysisContext, *tensors) -> bool:
    """Activation scales and zero points must be per-tensor; otherwise block the node and return False."""
    for tensor in tensors:
        if tensor is not None and ctx.numel(tensor) != 1:
            ctx.block_all(f"per-axis activation quantization ('{tensor.name}') is not supported")
            return False
    return True


def zero_point_fill(ctx: OracleContext, zero_point, weight_rank: int, axis: int):
    """What stands for 0 in a quantized weight: its zero point (0 when absent), shaped to broadcast over the
    entries selected along ``axis`` when it is per-axis (one value per output channel, weight axis ``axis``)."""
    if zero_point is None:
        return 0
    values = np.asarray(ctx.const(zero_point))
    if values.size == 1:
        return values.reshape(())
    shape = [1] * weight_rank
    shape[axis] = values.size
    return values.reshape(shape)


class QuantizedConvHandler(ConvHandler):
    """Conv coupling on quantized inputs; subclasses say where the weight's scale and zero point are and which
    inputs must be per-tensor."""

    w_quant: tuple = ()  # input positions of the weight's scale and zero point
    per_tensor: tuple = ()  # input positions of activation scales and zero points

    def analyse(self, node, ctx: AnalysisContext) -> None:
        if not require_scalars(ctx, *(ctx.input(i) for i in self.per_tensor)):
            return
        super().analyse(node, ctx)
        w = ctx.input(self.inputs[1])
        for i in self.w_quant:
            if not couple_scale(ctx, ctx.input(i), ctx.axis(w, 0)):
                return

    def oracle(self, node, ctx: OracleContext) -> None:
        w_index = self.inputs[1]
        w = ctx.input(w_index)
        removed = ctx.removed(w, 1)
        if len(removed):
            ctx.zero_input(w_index, 1, removed, zero_point_fill(ctx, ctx.input(self.w_quant[-1]), ctx.rank(w), 0))


@register("QLinearConv")
class QLinearConvHandler(QuantizedConvHandler):
    """Y = requant(X * W + B): inputs x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B (int32)."""

    inputs = (0, 3, 8)
    w_quant = (4, 5)
    per_tensor = (1, 2, 6, 7)


@register("ConvInteger")
class ConvIntegerHandler(QuantizedConvHandler):
    """Y[int32] = (X - x_zp) * (W - w_zp): inputs x, w, x_zero_point, w_zero_point; no bias."""

    inputs = (0, 1, None)
    w_quant = (3,)
    per_tensor = (2,)


class QuantizedMatMulHandler(MatMulHandler):
    """MatMul coupling on quantized operands: A's scale/zero point per row, B's per column."""

    a_quant: tuple = ()
    b_quant: tuple = ()
    per_tensor: tuple = ()

    def analyse(self, node, ctx: AnalysisContext) -> None:
        if not require_scalars(ctx, *(ctx.input(i) for i in self.per_tensor)):
            return
        super().analyse(node, ctx)
        a, b = ctx.input(self.inputs[0]), ctx.input(self.inputs[1])
        for positions, tensor, axis in ((self.a_quant, a, -2), (self.b_quant, b, -1)):
            for i in positions:
                if ctx.rank(tensor) < 2 and ctx.input(i) is not None and ctx.numel(ctx.input(i)) != 1:
                    ctx.block_all(f"a per-axis zero point or scale of the 1-D operand '{tensor.name}'")
                    return
                if ctx.rank(tensor) >= 2 and not couple_scale(ctx, ctx.input(i), ctx.axis(tensor, axis)):
                    return
        if not ctx.is_constant(a) and not ctx.is_constant(b):
            ctx.inexact(ctx.axis(a, -1), f"{ctx.where()} contracts two quantized activations: a removed entry "
                                         "of one meets the other's zero point, not 0")

    def oracle(self, node, ctx: OracleContext) -> None:
        a, b = ctx.input(self.inputs[0]), ctx.input(self.inputs[1])
        if ctx.is_constant(b) and ctx.rank(b) >= 2:
            removed = ctx.removed(b, ctx.rank(b) - 2)
            if len(removed):
                fill = zero_point_fill(ctx, ctx.input(self.b_quant[-1]), ctx.rank(b), ctx.rank(b) - 1)
                ctx.zero_input(self.inputs[1], ctx.rank(b) - 2, removed, fill)
        elif ctx.is_constant(a) and ctx.rank(a) >= 2:
            removed = ctx.removed(a, ctx.rank(a) - 1)
            if len(removed):
                fill = zero_point_fill(ctx, ctx.input(self.a_quant[-1]), ctx.rank(a), ctx.rank(a) - 2)
                ctx.zero_input(self.inputs[0], ctx.rank(a) - 1, removed, fill)


@register("QLinearMatMul")
class QLinearMatMulHandler(QuantizedMatMulHandler):
    """Y = requant(A @ B): inputs a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp."""

    inputs = (0, 3)
    a_quant = (1, 2)
    b_quant = (4, 5)
    per_tensor = (6, 7)


@register("MatMulInteger")
class MatMulIntegerHandler(QuantizedMatMulHandler):
    """Y[int32] = (A - a_zp) @ (B - b_zp): inputs a, b, a_zero_point (per row), b_zero_point (per column)."""

    inputs = (0, 1)
    a_quant = (2,)
    b_quant = (3,)
