"""Quantisation: QDQ pairs are elementwise, so QDQ models prune like float ones; integer-arithmetic ops are refused.

QuantizeLinear y = saturate(round(x / scale) + zero_point) and DequantizeLinear y = (x - zero_point) * scale keep
every axis of x. A per-axis scale and zero point (1-D, along x's ``axis``) follow that axis and are sliced with the
weights; per-tensor ones (scalars) couple nothing. Zeroed channels stay zero through a Q/DQ pair (0 quantises to the
zero point, which dequantises to 0), so pruning through them is mask-exact. Blocked quantisation (``block_size``,
opset 21) shares one scale among several channels: not supported, its groups are blocked.
"""

from __future__ import annotations

from onnxprune.op_handlers.common import couple_identity_all

from onnxprune.handlers import AnalysisContext, OpHandler, register

INTEGER_OPS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear")


@register("QuantizeLinear")
class QuantizeLinearHandler(OpHandler):
    """Y = saturate(round(X / scale) + zero_point) with a per-tensor or per-axis scale and zero point."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, scale, zero_point, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
        block_size = int(ctx.attr("block_size", 0))
        if block_size > 0:
            ctx.block_all(f"blocked quantization (block_size={block_size}) is not supported")
            return
        couple_identity_all(ctx, x, y)
        if ctx.numel(scale) == 1:
            return  # per-tensor: nothing to slice
        if ctx.rank(scale) != 1:
            ctx.block_all(f"a {ctx.rank(scale)}-D quantization scale is not supported")
            return
        axis = ctx.axis(x, int(ctx.attr("axis", 1)))
        for tensor in (scale, zero_point):
            if tensor is not None:
                ctx.identity(ctx.axis(tensor, 0), axis)


@register("DequantizeLinear")
class DequantizeLinearHandler(QuantizeLinearHandler):
    """Y = (X - zero_point) * scale, coupled as QuantizeLinear; X may be a quantised weight."""

    def weight_inputs(self, node) -> list[int]:
        """A quantised weight (DequantizeLinear of an integer constant) counts for magnitude criteria (its
        integers, without scale: a per-channel scale makes every channel's range look alike)."""
        return [0]


@register(*INTEGER_OPS)
class IntegerOpHandler(OpHandler):
    """Y = integer conv/matmul of quantized X and W (QLinearConv, ConvInteger, ...): refused with the reason and
    what to do instead."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        ctx.block_all(f"quantized op {node.op} is not supported (prune the float model, or a QDQ-format "
                      "quantization of it, then quantize)")
