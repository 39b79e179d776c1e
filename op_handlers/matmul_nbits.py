"""com.microsoft MatMulNBits: Y[..., N] = A[..., K] @ dequantize(B)^T with B's rows blockwise quantized to
``bits`` (4 or 8): B [N, n_blocks, block_size * bits / 8] uint8, scales [N * n_blocks] (or [N, n_blocks]),
zero_points (optional) packed uint8 [N * ceil(n_blocks * bits / 8)] or of the scales' type, bias [N].

Output channels n are exact rows of B, of the scales and of the zero points, so they prune freely. Input channels
(K) go only in whole quantization blocks: the block is the unit (all block_size channels of A with it), B loses
that block, and the handler drops the matching entries of the scales and zero points (re-packing 4-bit zero
points). Pruning inside a block would need re-quantizing the weights, which is not done. g_idx (act-order) blocks
the node. Both are mask-exact: a removed block's inputs are zero in the mask oracle.
"""

from __future__ import annotations

import numpy as np

from onnxprune.handlers import AnalysisContext, OpHandler, RewriteContext, ShapeView, register


def unpack_bits(packed: np.ndarray, rows: int, count: int, bits: int) -> np.ndarray:
    """Per-row values of ``bits``-bit zero points packed little-end first into uint8 bytes: [rows, count]."""
    data = packed.reshape(rows, -1)
    if bits == 8:
        return data[:, :count]
    per_byte = 8 // bits
    shifts = (np.arange(per_byte) * bits).astype(np.uint8)
    values = (data[:, :, None] >> shifts) & np.uint8((1 << bits) - 1)
    return values.reshape(rows, -1)[:, :count]


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of ``unpack_bits``: [rows, count] -> flat uint8, each row padded to whole bytes."""
    if bits == 8:
        return values.astype(np.uint8).reshape(-1)
    per_byte = 8 // bits
    rows, count = values.shape
    padded = np.zeros((rows, -(-count // per_byte) * per_byte), dtype=np.uint8)
    padded[:, :count] = values
    grouped = padded.reshape(rows, -1, per_byte)
    shifts = (np.arange(per_byte) * bits).astype(np.uint8)
    return np.bitwise_or.reduce(grouped << shifts, axis=2).astype(np.uint8).reshape(-1)


@register("MatMulNBits", domain="com.microsoft")
class MatMulNBitsHandler(OpHandler):
    """Y = A @ dequant(B)^T (+ bias): output channels are B's rows; input channels whole blocks of block_size."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        a, b, y = ctx.input(0), ctx.input(1), ctx.output(0)
        k, block = int(ctx.attr("K")), int(ctx.attr("block_size"))
        if ctx.input(4) is not None or not ctx.is_constant(b) or ctx.rank(b) != 3:
            ctx.block_all(f"{node.op} with g_idx or non-constant weights is not supported")
            return
        rank = ctx.rank(a)
        ctx.identity(ctx.axis(b, 0), ctx.axis(y, ctx.rank(y) - 1))
        ctx.producer(ctx.axis(b, 0))
        bias = ctx.input(5)
        if bias is not None:
            ctx.identity(ctx.axis(bias, 0), ctx.axis(b, 0))
        channels = np.arange(k)
        ctx.couple(ctx.axis(a, rank - 1), ctx.axis(b, 1), channels, channels // block)
        for axis in range(rank - 1):
            ctx.identity(ctx.axis(a, axis), ctx.axis(y, axis))

    def weight_inputs(self, node) -> list[int]:
        return [1]

    def rewrite(self, node, ctx: RewriteContext) -> None:
        a, b = ctx.input(0), ctx.input(1)
        old_n, old_blocks = ctx.old_size(b, 0), ctx.old_size(b, 1)
        rows, blocks = ctx.kept(b, 0), ctx.kept(b, 1)
        bits = int(ctx.attr("bits", 4))
        ctx.set_attr("N", len(rows))
        ctx.set_attr("K", ctx.new_size(a, ctx.rank(a) - 1))
        if len(rows) == old_n and len(blocks) == old_blocks:
            return
        scales = np.asarray(ctx.const(ctx.input(2)))
        kept = scales.reshape(old_n, old_blocks)[np.ix_(rows, blocks)]
        ctx.set_input_values(2, kept.reshape(-1) if scales.ndim == 1 else kept)
        zero_points = ctx.input(3)
        if zero_points is None:
            return
        values = np.asarray(ctx.const(zero_points))
        if values.dtype == np.uint8 and values.size != old_n * old_blocks or bits < 8 and values.dtype == np.uint8:
            unpacked = unpack_bits(values, old_n, old_blocks, bits)[np.ix_(rows, blocks)]
            ctx.set_input_values(3, pack_bits(unpacked, bits).reshape(-1 if values.ndim == 1 else (len(rows), -1)))
        else:
            kept = values.reshape(old_n, old_blocks)[np.ix_(rows, blocks)]
            ctx.set_input_values(3, kept.reshape(-1) if values.ndim == 1 else kept)

    def macs(self, node, ctx: ShapeView) -> int:
        y = ctx.shape(ctx.output(0))
        steps = int(np.prod([d if isinstance(d, int) else 1 for d in y]))
        return steps * int(ctx.attr("K"))
