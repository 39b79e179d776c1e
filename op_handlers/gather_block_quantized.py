"""com.microsoft GatherBlockQuantized: Y = dequantize(data)[indices] along ``gather_axis``, with data blockwise
quantized along ``quantize_axis`` (``block_size`` values share one entry of scales, and of zero_points when given).
data is uint8 (``bits`` 2, 4 or 8: gather_axis 0, quantize_axis last, 8 / bits values packed per byte along the last
axis, low bits first) or int4/uint4 (any axes; ONNX packs them, shapes are logical); scales has data's rank, sizes
ceil(n / block_size) on quantize_axis and data's sizes elsewhere; zero_points (data's type) match scales, except that
uint8 ones of bits < 8 are packed along the last axis too. An embedding table: rows are token ids, columns hidden.

The gathered axis (rows) is never pruned: ids look rows up. Every other axis of data is the matching axis of Y
(the packed last axis of uint8 data holds 8 / bits channels per byte). On quantize_axis channels go only in whole
quantization blocks, declared like MatMulNBits' input channels (a granularity of block_size): the removed blocks'
bytes, scales and zero points are dropped and no value is re-quantized, so the kept channels dequantize exactly as
before and the op is mask-exact. Scales and zero points are rewritten by the handler (re-packing packed zero points),
as new tensors: onnxruntime-genai's tied embeddings share them with the lm_head MatMulNBits. FP8/FP4 data (no zero
points, scales that may broadcast) is not handled and blocks the node.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnxprune.op_handlers.matmul_nbits import pack_bits, unpack_bits

from onnxprune.handlers import AnalysisContext, OpHandler, RewriteContext, register

_INTEGER_DATA = ("uint8", "int4", "uint4")


@register("GatherBlockQuantized", domain="com.microsoft")
class GatherBlockQuantizedHandler(OpHandler):
    """Y = dequant(data)[indices] along gather_axis: rows blocked; other axes of data are Y's, in whole blocks on
    quantize_axis; scales and zero points follow the kept blocks and channels."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        data, indices, y = ctx.input(0), ctx.input(1), ctx.output(0)
        refusal = self._refusal(node, ctx)
        if refusal:
            ctx.block_all(refusal)
            return
        rank, n_idx = ctx.rank(data), ctx.rank(indices)
        gather, quant = self._axes(ctx, rank)
        per_byte = self._per_byte(ctx)
        ctx.block(ctx.axis(data, gather), f"{ctx.where()} looks up rows of this table by id")
        for axis in range(rank):
            if axis == gather:
                continue
            out = ctx.axis(y, axis if axis < gather else axis - 1 + n_idx)
            if axis == rank - 1 and per_byte > 1:  # packed bytes: channel c is in byte c // per_byte
                channels = np.arange(ctx.size(data, axis) * per_byte)
                ctx.couple(out, ctx.axis(data, axis), channels, channels // per_byte)
            else:
                ctx.identity(ctx.axis(data, axis), out)
            if ctx.is_constant(data):  # the table is the weight that makes these channels (as Gather's)
                ctx.producer(ctx.axis(data, axis))
            if axis == quant:
                ctx.granularity(out, int(ctx.attr("block_size", 128)),
                                f"{ctx.where()} quantizes this axis in blocks")
        for axis in range(n_idx):
            ctx.identity(ctx.axis(indices, axis), ctx.axis(y, gather + axis))
            ctx.nonchannel(ctx.axis(indices, axis))

    @staticmethod
    def _refusal(node, ctx: AnalysisContext) -> str | None:
        """Why the node is not handled (a reason shown to the user), or None."""
        data, scales, zero_points = ctx.input(0), ctx.input(2), ctx.input(3)
        if str(data.dtype) not in _INTEGER_DATA:  # onnx-graphsurgeon keeps types numpy lacks as ONNX enums
            kind = onnx.TensorProto.DataType.Name(data.dtype).lower() if isinstance(data.dtype, int) else data.dtype
            return f"{node.op} with {kind} data is not supported (uint8, int4 and uint4 tables are)"
        if not ctx.is_constant(scales) or zero_points is not None and not ctx.is_constant(zero_points):
            return f"{node.op} with scales or zero points computed at run time is not supported"
        if any(not isinstance(d, int) for d in ctx.shape(data)):
            return f"{node.op} with a data table of dynamic shape is not supported"
        return None

    @staticmethod
    def _axes(ctx, rank: int) -> tuple[int, int]:
        return int(ctx.attr("gather_axis", 0)) % rank, int(ctx.attr("quantize_axis", 1)) % rank

    @staticmethod
    def _per_byte(ctx) -> int:
        """Values per element of data's last axis: 8 / bits for uint8 data of bits < 8, else 1."""
        bits = int(ctx.attr("bits", 4))
        return 8 // bits if str(ctx.input(0).dtype) == "uint8" and bits < 8 else 1

    def rewrite(self, node, ctx: RewriteContext) -> None:
        data, indices, y = ctx.input(0), ctx.input(1), ctx.output(0)
        rank, n_idx = ctx.rank(data), ctx.rank(indices)
        gather, quant = self._axes(ctx, rank)
        block = int(ctx.attr("block_size", 128))
        scales = np.asarray(ctx.const(ctx.input(2)))
        index, changed = [], False
        for axis in range(rank):
            if axis == gather:
                index.append(np.arange(scales.shape[axis]))
                continue
            out_axis = axis if axis < gather else axis - 1 + n_idx
            kept = ctx.kept(y, out_axis)
            changed |= len(kept) != ctx.old_size(y, out_axis)
            index.append(np.unique(kept // block) if axis == quant else kept)
        if not changed:
            return
        ctx.set_input_values(2, scales[np.ix_(*index)])
        if ctx.input(3) is None:
            return
        values = np.asarray(ctx.const(ctx.input(3)))
        per_byte = self._per_byte(ctx)
        if per_byte == 1:
            ctx.set_input_values(3, values[np.ix_(*index)])
            return
        bits, count = 8 // per_byte, scales.shape[-1]
        rows = int(np.prod(scales.shape[:-1]))
        unpacked = unpack_bits(values, rows, count, bits).reshape(scales.shape)[np.ix_(*index)]
        kept_shape = unpacked.shape
        packed = pack_bits(unpacked.reshape(-1, kept_shape[-1]), bits)
        ctx.set_input_values(3, packed.reshape(*kept_shape[:-1], -1))
