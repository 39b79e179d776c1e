"""Quantisation: QDQ pairs and DynamicQuantizeLinear are elementwise, so QDQ and dynamically quantized models prune
like float ones (integer convs and matmuls: ``integer``; DynamicQuantizeLSTM: ``quantized_recurrent``).

QuantizeLinear y = saturate(round(x / scale) + zero_point) and DequantizeLinear y = (x - zero_point) * scale keep
every axis of x. A per-axis scale and zero point (1-D, along x's ``axis``) follow that axis and are sliced with the
weights; per-tensor ones (scalars) couple nothing. Zeroed channels stay zero through a Q/DQ pair (0 quantises to the
zero point, which dequantises to 0), so pruning through them is mask-exact. Blocked quantisation (``block_size``,
opset 21) shares one scale among several channels: not supported, its groups are blocked.
"""

from __future__ import annotations

from onnxprune.op_handlers.common import couple_identity_all

from onnxprune.handlers import AnalysisContext, OpHandler, register


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


@register("DynamicQuantizeLinear")
class DynamicQuantizeLinearHandler(OpHandler):
    """Y, y_scale, y_zero_point = DynamicQuantizeLinear(X): uint8 with one scale and zero point computed from
    min(0, min X) and max(0, max X). Y keeps every axis of X; the scale and zero point are scalars. Because the
    range always holds 0, channels the oracle zeroes leave it as pruning them does: the quantization is exact."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        couple_identity_all(ctx, ctx.input(0), ctx.output(0))
