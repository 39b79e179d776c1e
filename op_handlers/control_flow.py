"""Control flow (If, Loop, Scan): the analysis visits the nodes of their bodies like any others (outer-scope tensors
read inside a body are the same tensors as outside, so those couplings come for free); these handlers couple what
crosses a body's boundary, every axis by identity:

- If: output k of the node = output k of ``then_branch`` = output k of ``else_branch`` (the condition: no channels);
- Loop: v_initial k = body input 2+k = body output 1+k = final value k (loop-carried state is one tensor); scan
  output j of the body = node output N+j without its leading iteration axis (trip count and condition: none);
- Scan (opset >= 9): states as Loop's; scan input/output j of the node = body input/output N+j with the scan axis
  (``scan_input_axes`` / ``scan_output_axes``, default 0) removed.

Sizes inside bodies (weights, Reshape targets) are sliced and rewritten by the core and the bodies' own handlers, so
nothing here rewrites anything. MACs: a body counts once per run of the node: If counts its larger branch (one
branch runs; the larger is the cost a run can reach), Loop its body times the trip count when that is a constant
(once when it is not known), Scan its body times the scan length when that is static (once otherwise).
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnxprune.handlers import AnalysisContext, OpHandler, ShapeView, UnknownShape, handler_for, register
from onnxprune.ir.shape_view import tensor_shape


def graph_macs(graph: gs.Graph) -> int:
    """Multiply-accumulates of one run of ``graph`` (dynamic dims count as 1): each node's handler's ``macs``, nodes
    whose handler cannot count them (unknown shapes) left out; control-flow nodes count their bodies (see above)."""
    total = 0
    for node in graph.nodes:
        handler = handler_for(node)
        if handler is not None:
            try:
                total += int(handler.macs(node, ShapeView(node)))
            except (UnknownShape, TypeError, IndexError):
                continue
    return total


def couple_same(ctx: AnalysisContext, inner: gs.Tensor, outer: gs.Tensor | None, what: str) -> None:
    """Couple every axis of body tensor ``inner`` with the same axis of ``outer`` (the node's tensor it stands for);
    block both when either rank is unknown or the ranks differ (``what`` names the role in the reason)."""
    if outer is None or not inner.name:
        return
    a, b = tensor_shape(inner), tensor_shape(outer)
    if a is None or b is None or len(a) != len(b):
        reason = (f"{ctx.where()}: {what} '{inner.name}' has shape {a} and '{outer.name}' has shape {b} "
                  "(unknown or different ranks; shape inference could not type the body)")
        ctx.block_tensor(inner, reason)
        ctx.block_tensor(outer, reason)
        return
    for axis in range(len(a)):
        ctx.identity(ctx.axis(inner, axis), ctx.axis(outer, axis))


def couple_scanned(ctx: AnalysisContext, inner: gs.Tensor, outer: gs.Tensor | None, scan_axis: int, what: str) -> None:
    """Couple body tensor ``inner`` (one slice) with ``outer`` (all slices stacked along ``scan_axis``, negative
    counted from the end of ``outer``): the scan axis is an iteration axis, the others are the slice's in order."""
    if outer is None or not inner.name:
        return
    a, b = tensor_shape(inner), tensor_shape(outer)
    if a is None or b is None or len(b) != len(a) + 1 or not -len(b) <= scan_axis < len(b):
        reason = (f"{ctx.where()}: {what} '{inner.name}' has shape {a} and '{outer.name}' has shape {b} with scan "
                  f"axis {scan_axis} (unknown or mismatched ranks; shape inference could not type the body)")
        ctx.block_tensor(inner, reason)
        ctx.block_tensor(outer, reason)
        return
    scan_axis %= len(b)
    ctx.nonchannel(ctx.axis(outer, scan_axis))
    for axis in range(len(a)):
        ctx.identity(ctx.axis(inner, axis), ctx.axis(outer, axis + (axis >= scan_axis)))


def _check_arity(body: gs.Graph, inputs: int, outputs: int) -> None:
    """Raise ValueError when a body does not have the inputs and outputs its node calls for (the analysis then
    blocks the node and its bodies' boundaries)."""
    if inputs < 0 or outputs < 0 or len(body.inputs) != inputs or len(body.outputs) != outputs:
        raise ValueError(f"its body '{body.name}' has {len(body.inputs)} inputs and {len(body.outputs)} outputs, "
                         f"expected {inputs} and {outputs}")


class BodyHandler(OpHandler):
    """Base of the control-flow handlers: ``analyse`` couples their bodies' boundaries (so the analysis, which
    asks ``couples_bodies``, does not block them), or raises, and then the analysis blocks them."""

    couples_bodies = True

    def carried(self, ctx: AnalysisContext, initial: list, state_inputs: list, state_outputs: list,
                final: list) -> None:
        """Loop-carried state k: initial value, body input, body output and final value are one tensor's axes."""
        for k, state in enumerate(state_inputs):
            couple_same(ctx, state, initial[k], "loop-carried body input")
            couple_same(ctx, state_outputs[k], final[k], "loop-carried body output")
            couple_same(ctx, state_outputs[k], state, "loop-carried body output")


@register("If")
class IfHandler(BodyHandler):
    """Y_k = then_branch() [k] if cond else else_branch() [k]: output k of either branch is output k of the node."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        for name in ("then_branch", "else_branch"):
            body = ctx.attr(name)
            _check_arity(body, 0, len(node.outputs))
            for k, inner in enumerate(body.outputs):
                couple_same(ctx, inner, ctx.output(k), f"{name} output {k}")

    def macs(self, node, ctx: ShapeView) -> int:
        return max(graph_macs(ctx.attr("then_branch")), graph_macs(ctx.attr("else_branch")))


@register("Loop")
class LoopHandler(BodyHandler):
    """for i in range(M) while cond: (cond, v, scan_i) = body(i, cond, v); outputs: the final v, then every
    iteration's scan outputs stacked along a new leading axis."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        body = ctx.attr("body")
        state = len(node.inputs) - 2
        scans = len(node.outputs) - state
        _check_arity(body, 2 + state, 1 + state + scans if scans >= 0 else -1)
        self.carried(ctx, [ctx.input(2 + k) for k in range(state)], body.inputs[2:], body.outputs[1:1 + state],
                     [ctx.output(k) for k in range(state)])
        for j in range(scans):
            couple_scanned(ctx, body.outputs[1 + state + j], ctx.output(state + j), 0, f"scan output {j}")

    def macs(self, node, ctx: ShapeView) -> int:
        trips = ctx.const(ctx.input(0))
        return graph_macs(ctx.attr("body")) * (max(int(trips), 0) if trips is not None and trips.size == 1 else 1)


@register("Scan")
class ScanHandler(BodyHandler):
    """(states, scan outputs) = Scan(states, scan inputs): the body runs once per slice of the scan inputs along
    their scan axes, carrying the states; its per-slice outputs are stacked along the scan output axes."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        if 0 < ctx.opset() < 9:
            raise ValueError("Scan before opset 9 (batch axis and sequence_lens) is not supported")
        body = ctx.attr("body")
        scan_in = int(ctx.attr("num_scan_inputs"))
        state = len(node.inputs) - scan_in
        scan_out = len(node.outputs) - state
        _check_arity(body, state + scan_in if state >= 0 else -1, state + scan_out if scan_out >= 0 else -1)
        self.carried(ctx, [ctx.input(k) for k in range(state)], body.inputs[:state], body.outputs[:state],
                     [ctx.output(k) for k in range(state)])
        in_axes = list(ctx.attr("scan_input_axes", [0] * scan_in))
        out_axes = list(ctx.attr("scan_output_axes", [0] * scan_out))
        for j in range(scan_in):
            couple_scanned(ctx, body.inputs[state + j], ctx.input(state + j), int(in_axes[j]), f"scan input {j}")
        for j in range(scan_out):
            couple_scanned(ctx, body.outputs[state + j], ctx.output(state + j), int(out_axes[j]),
                           f"scan output {j}")

    def macs(self, node, ctx: ShapeView) -> int:
        scan_in = int(ctx.attr("num_scan_inputs"))
        first = ctx.input(len(node.inputs) - scan_in)
        steps = None
        if first is not None and tensor_shape(first) is not None:
            axes = list(ctx.attr("scan_input_axes", [0] * scan_in))
            steps = ctx.size(first, int(axes[0]) if axes else 0)
        return graph_macs(ctx.attr("body")) * (steps or 1)
