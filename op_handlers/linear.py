"""Gemm and MatMul: the contraction axis couples the two operands, the output axis follows B's last axis.

Rows of the activation operand are batch/sequence axes. A constant on the left of MatMul (W @ X, as some
converters write it) is a weight whose rows produce channels.
"""

from __future__ import annotations

from onnxprune.op_handlers.common import is_static, static_product

from onnxprune.handlers import AnalysisContext, OpHandler, ShapeView, register


@register("Gemm")
class GemmHandler(OpHandler):
    """Y[M, N] = alpha * A'[M, K] @ B'[K, N] + beta * C, with A' = A^T if transA and B' = B^T if transB."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        a, b, c, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
        trans_a, trans_b = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
        a_m, a_k = ctx.axis(a, trans_a), ctx.axis(a, 1 - trans_a)
        b_k, b_n = ctx.axis(b, trans_b), ctx.axis(b, 1 - trans_b)
        ctx.identity(a_k, b_k)
        ctx.identity(b_n, ctx.axis(y, 1))
        ctx.identity(a_m, ctx.axis(y, 0))
        if ctx.is_constant(b):
            ctx.producer(b_n)
        if ctx.is_constant(a):
            ctx.producer(a_m)
        else:
            ctx.nonchannel(a_m)
        if c is not None:
            shape = ctx.shape(c)
            for axis, dim in enumerate(shape):
                out_axis = axis + 2 - len(shape)
                if dim != 1:
                    ctx.identity(ctx.axis(c, axis), ctx.axis(y, out_axis))

    def macs(self, node, ctx: ShapeView) -> int:
        b = ctx.shape(ctx.input(1))
        return static_product(ctx.shape(ctx.output(0))) * static_product([b[int(ctx.attr("transB", 0))]])


@register("MatMul")
class MatMulHandler(OpHandler):
    """Y[..., M, N] = A[..., M, K] @ B[..., K, N] with numpy batch broadcasting (1-D operands as in numpy).
    Subclasses for quantized matmuls set where A and B are among the inputs."""

    inputs: tuple = (0, 1)  # A, B

    def analyse(self, node, ctx: AnalysisContext) -> None:
        a, b, y = ctx.input(self.inputs[0]), ctx.input(self.inputs[1]), ctx.output(0)
        ra, rb, ry = ctx.rank(a), ctx.rank(b), ctx.rank(y)
        ctx.identity(ctx.axis(a, ra - 1), ctx.axis(b, max(rb - 2, 0)))
        if rb >= 2:
            ctx.identity(ctx.axis(b, rb - 1), ctx.axis(y, ry - 1))
            if ctx.is_constant(b):
                ctx.producer(ctx.axis(b, rb - 1))
        if ra >= 2:
            m_out = ctx.axis(y, ry - 2 if rb >= 2 else ry - 1)
            ctx.identity(ctx.axis(a, ra - 2), m_out)
            if ctx.is_constant(a):
                ctx.producer(ctx.axis(a, ra - 2))
            else:
                ctx.nonchannel(ctx.axis(a, ra - 2))
        batch_out = ry - (2 if ra >= 2 and rb >= 2 else 1)
        for tensor, rank in ((a, ra), (b, rb)):
            for axis in range(rank - 2):
                out_axis = batch_out - (rank - 2) + axis
                if ctx.shape(tensor)[axis] != 1 or ctx.shape(y)[out_axis] == 1:
                    ctx.identity(ctx.axis(tensor, axis), ctx.axis(y, out_axis))
        if not ctx.is_constant(a) and not ctx.is_constant(b) and min(ra, rb) >= 3:
            _label_heads(ctx, a, b)

    def macs(self, node, ctx: ShapeView) -> int:
        a = ctx.shape(ctx.input(self.inputs[0]))
        return static_product(ctx.shape(ctx.output(0))) * static_product([a[-1]])  # dynamic K (over T) counts 1


def _label_heads(ctx: AnalysisContext, a, b) -> None:
    """Attention's batched products of two activations (scores = Q @ K^T, context = P @ V): a static batch axis
    of size > 1 in both operands is one unit per head ('heads'); the other static axes are inside each head."""
    sa, sb = ctx.shape(a), ctx.shape(b)
    lead = len(sa) - len(sb)
    heads = [axis for axis in range(len(sa) - 2) if 0 <= axis - lead < len(sb) - 2 and is_static(sa[axis])
             and sa[axis] > 1 and sb[axis - lead] == sa[axis]]
    if not heads:
        return
    for tensor, shape, offset in ((a, sa, 0), (b, sb, lead)):
        for axis, dim in enumerate(shape):
            if is_static(dim) and dim > 1:
                tag = "heads" if axis + offset in heads else "head_dim"
                ctx.label(ctx.axis(tensor, axis), tag)
