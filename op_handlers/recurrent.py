"""Recurrent ops (LSTM, GRU, RNN): hidden unit k is a row of every gate block of W, R and B, column k of R,
entry k of the initial and final states and of Y. Input size couples X's last axis with W's columns.

Removing a unit is mask-exact once its column of R is zeroed too (its state no longer reaches the other units),
which ``oracle`` does for the reference model.
"""

from __future__ import annotations

import numpy as np
from onnxprune.op_handlers.common import static_product

from onnxprune.handlers import AnalysisContext, OpHandler, OracleContext, RewriteContext, ShapeView, register


def couple_states(ctx: AnalysisContext, x, unit, states: list) -> None:
    """What every recurrent op shares: X's [seq, batch] axes, and each state [dirs, batch, H] and Y
    [seq, dirs, batch, H] holding hidden unit k at index k of ``unit``'s axis."""
    ctx.nonchannel_tensor(x, [0, 1])
    for state in states:
        if state is not None:
            ctx.identity(ctx.axis(state, 2), unit)
            ctx.nonchannel_tensor(state, [0, 1])
    y = ctx.output(0)
    if y is not None:
        ctx.identity(ctx.axis(y, 3), unit)
        ctx.nonchannel_tensor(y, [0, 1, 2])


class RecurrentHandler(OpHandler):
    """H_t = f(X_t W^T + H_(t-1) R^T + Wb + Rb), one row block of W, R, B per gate; subclasses set the number of
    gates and which inputs and outputs hold states and peepholes."""

    gates = 1
    state_inputs = (5,)  # initial_h (and initial_c for LSTM)
    state_outputs = (1,)  # Y_h (and Y_c)
    peephole_input: int | None = None  # LSTM's P[dirs, 3H]

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, w, r, b = ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3)
        if not ctx.is_constant(w) or not ctx.is_constant(r):
            ctx.block_all(f"{node.op} weights are not constants")
            return
        hidden = int(ctx.attr("hidden_size"))
        layout = int(ctx.attr("layout", 0))
        unit = ctx.axis(r, 2)
        rows = np.arange(self.gates * hidden)
        ctx.producer(ctx.axis(w, 1))
        ctx.couple(unit, ctx.axis(w, 1), rows % hidden, rows)
        ctx.couple(unit, ctx.axis(r, 1), rows % hidden, rows)
        if b is not None:
            both = np.arange(2 * self.gates * hidden)
            ctx.couple(unit, ctx.axis(b, 1), both % hidden, both)
        peephole = ctx.input(self.peephole_input) if self.peephole_input is not None else None
        if peephole is not None:
            three = np.arange(3 * hidden)
            ctx.couple(unit, ctx.axis(peephole, 1), three % hidden, three)
        ctx.identity(ctx.axis(x, 2), ctx.axis(w, 2))
        couple_states(ctx, x, unit, [ctx.input(i) for i in self.state_inputs] +
                      [ctx.output(i) for i in self.state_outputs])
        if layout not in (0, 1):
            ctx.block_all(f"unknown layout {layout}")

    def weight_inputs(self, node) -> list[int]:
        return [1, 2]

    def rewrite(self, node, ctx: RewriteContext) -> None:
        ctx.set_attr("hidden_size", ctx.new_size(ctx.input(2), 2))

    def oracle(self, node, ctx: OracleContext) -> None:
        removed = ctx.removed(ctx.input(2), 2)
        if len(removed):
            ctx.zero_input(2, 2, removed)

    def macs(self, node, ctx: ShapeView) -> int:
        x, w, r = ctx.shape(ctx.input(0)), ctx.shape(ctx.input(1)), ctx.shape(ctx.input(2))
        layout = int(ctx.attr("layout", 0))
        steps = x[layout] if isinstance(x[layout], int) else 1  # X: [seq, batch, in] (layout 0) or [batch, seq, in]
        return steps * static_product(w[:2]) * (static_product(w[2:3]) + static_product(r[2:3]))


@register("LSTM")
class LSTMHandler(RecurrentHandler):
    """C_t = f * C_(t-1) + i * c, H_t = o * h(C_t), with gates i, o, f, c from X_t W^T + H_(t-1) R^T + B (and
    optional peepholes P[dirs, 3H] on C); states h and c."""

    gates = 4
    state_inputs = (5, 6)
    state_outputs = (1, 2)
    peephole_input = 7


@register("GRU")
class GRUHandler(RecurrentHandler):
    """H_t = (1 - z) * h + z * H_(t-1), with gates z, r and candidate h = g(X_t W_h^T + (r * H_(t-1)) R_h^T + B);
    state h."""

    gates = 3


@register("RNN")
class RNNHandler(RecurrentHandler):
    """H_t = f(X_t W^T + H_(t-1) R^T + Wb + Rb): one gate; state h."""
