"""com.microsoft DynamicQuantizeLSTM, as onnxruntime's ``quantize_dynamic`` writes an LSTM: ONNX's LSTM with int8
weights stored transposed, W[dirs, input, 4H] and R[dirs, H, 4H] (gate blocks i, o, f, c along the last axis), and
their scales and zero points per direction ([dirs]) or per gate row ([dirs, 4H]). Hidden unit k is row k of R,
entry k of every gate block of W, R, B (and P), of the states and of Y; input feature j is row j of W.

The op quantizes X and the hidden state on the fly with a range that holds 0. For the mask oracle a removed unit
must therefore be dead, not only cut off: ``oracle`` sets its cell-gate entries of W and R to their zero points
and of B to 0, so its cell (from a zero initial cell) and its output stay exactly 0 and leave every range as
pruning it does, and sets its row of R to R's zero point.
"""

from __future__ import annotations

import numpy as np
from onnxprune.op_handlers.common import static_product
from onnxprune.op_handlers.recurrent import couple_states

from onnxprune.handlers import AnalysisContext, OpHandler, OracleContext, RewriteContext, ShapeView, register

GATES = 4
CELL_GATE = 3  # i, o, f, c


def _quant_fill(ctx: OracleContext, zero_point, dirs: int, rows: np.ndarray | None = None):
    """A zero point shaped to broadcast over W[:, sel, :] or R[:, sel, :] (per direction: [dirs, 1, 1]; per gate
    row: [dirs, 1, 4H], restricted to ``rows`` when the selection is along the last axis)."""
    if zero_point is None:
        return 0
    values = np.asarray(ctx.const(zero_point)).reshape(dirs, 1, -1)
    return values if rows is None or values.shape[-1] == 1 else values[:, :, rows]


@register("DynamicQuantizeLSTM", domain="com.microsoft")
class DynamicQuantizeLSTMHandler(OpHandler):
    """Y, Y_h, Y_c = LSTM(X, W, R, B, sequence_lens, initial_h, initial_c, P) with quantized W, R and their
    W_scale, W_zero_point, R_scale, R_zero_point (inputs 8-11)."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, w, r, b = ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3)
        if not ctx.is_constant(w) or not ctx.is_constant(r):
            ctx.block_all(f"{node.op} weights are not constants")
            return
        hidden = int(ctx.attr("hidden_size"))
        unit = ctx.axis(r, 1)
        rows = np.arange(GATES * hidden)
        ctx.producer(ctx.axis(w, 2))
        ctx.couple(unit, ctx.axis(w, 2), rows % hidden, rows)
        ctx.couple(unit, ctx.axis(r, 2), rows % hidden, rows)
        for i, width in ((3, 2 * GATES), (7, 3)):  # B[dirs, 8H], P[dirs, 3H]
            tensor = ctx.input(i)
            if tensor is not None:
                both = np.arange(width * hidden)
                ctx.couple(unit, ctx.axis(tensor, 1), both % hidden, both)
        for i in (8, 9, 10, 11):
            tensor = ctx.input(i)
            if tensor is not None and ctx.rank(tensor) == 2:
                ctx.couple(unit, ctx.axis(tensor, 1), rows % hidden, rows)
            elif tensor is not None and ctx.rank(tensor) != 1:
                ctx.block_all(f"a {ctx.rank(tensor)}-D scale or zero point ('{tensor.name}') is not supported")
                return
        ctx.identity(ctx.axis(x, 2), ctx.axis(w, 1))
        couple_states(ctx, x, unit, [ctx.input(5), ctx.input(6), ctx.output(1), ctx.output(2)])
        if b is None:
            ctx.block_all(f"{node.op} without a bias is not supported")

    def weight_inputs(self, node) -> list[int]:
        return [1, 2]

    def rewrite(self, node, ctx: RewriteContext) -> None:
        ctx.set_attr("hidden_size", ctx.new_size(ctx.input(2), 1))

    def oracle(self, node, ctx: OracleContext) -> None:
        r = ctx.input(2)
        removed = ctx.removed(r, 1)
        if not len(removed):
            return
        dirs, hidden = ctx.shape(r)[0], ctx.shape(r)[1]
        cell = CELL_GATE * hidden + removed
        ctx.zero_input(2, 1, removed, _quant_fill(ctx, ctx.input(11), dirs))
        ctx.zero_input(1, 2, cell, _quant_fill(ctx, ctx.input(9), dirs, cell))
        ctx.zero_input(2, 2, cell, _quant_fill(ctx, ctx.input(11), dirs, cell))
        ctx.zero_input(3, 1, np.concatenate([cell, cell + GATES * hidden]))

    def macs(self, node, ctx: ShapeView) -> int:
        x, w, r = ctx.shape(ctx.input(0)), ctx.shape(ctx.input(1)), ctx.shape(ctx.input(2))
        steps = x[0] if isinstance(x[0], int) else 1
        return steps * static_product([w[0], w[2]]) * (static_product(w[1:2]) + static_product(r[1:2]))
