"""Elementwise ops: unary ones keep every axis; n-ary ones follow numpy broadcasting (Add, Mul, Where, PRelu...)."""

from __future__ import annotations

from onnxprune.handler import AnalysisContext, OpHandler, register
from op_handlers.common import couple_broadcast, couple_identity_all, trace_shape_element

UNARY = ("Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Clip", "Erf", "Gelu", "Elu", "Selu",
         "Softplus", "Softsign", "Identity", "Dropout", "Cast", "CastLike", "Neg", "Abs", "Exp", "Log", "Sqrt",
         "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Not", "Mish", "Celu", "ThresholdedRelu", "Shrink",
         "IsNaN", "IsInf", "Sin", "Cos", "Tan", "Atan", "Asin", "Acos", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh")
BINARY = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum", "Mod", "Where", "PRelu", "Equal",
          "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor", "BitwiseAnd", "BitwiseOr")


@register(*UNARY)
class UnaryHandler(OpHandler):
    """Y = f(X) elementwise (extra inputs such as Clip's bounds are scalars; Dropout's mask has X's shape)."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x = ctx.input(0)
        for out in [t for t in node.outputs if t.name]:
            couple_identity_all(ctx, x, out)

    def value_source(self, node, ctx, position):
        """Identity and Cast pass shape values through unchanged."""
        return (0, position) if node.op in ("Identity", "Cast") else None

    def axis_source(self, node, ctx):
        """Identity and Cast keep every axis."""
        return list(range(ctx.rank(ctx.input(0)))) if node.op in ("Identity", "Cast") else None


@register(*BINARY)
class BroadcastHandler(OpHandler):
    """Y = f(A, B, ...) with numpy broadcasting of every input to Y's shape."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        couple_broadcast(ctx, [t for t in node.inputs if t.name], ctx.output(0))

    def value_source(self, node, ctx, position):
        """Where on 1-D shape vectors with a known condition element copies that element from the branch it names
        (TorchScript writes ``expand(n, -1)`` as ``Where(Equal(s, -1), 1, s)``), so it can be rewritten there."""
        if node.op != "Where" or any(ctx.numel(t) is None or ctx.rank(t) > 1 for t in node.inputs):
            return None
        cond = trace_shape_element(ctx, node.inputs[0], position if ctx.numel(node.inputs[0]) > 1 else 0)
        if not isinstance(cond, int):
            return None
        branch = 1 if cond else 2
        return (branch, position if ctx.numel(node.inputs[branch]) > 1 else 0)

    def value_element(self, node, ctx, position, element):
        """Integer arithmetic on 1-D shape vectors, element by element: Equal of a dim read by Shape with a
        negative constant is false (sizes are never negative); the rest needs constant elements."""
        if node.op not in _SHAPE_MATH or len(node.inputs) != 2:
            return None
        args = []
        for tensor in node.inputs:
            n = ctx.numel(tensor)
            if n is None or (n != 1 and ctx.rank(tensor) != 1):
                return None
            args.append(element(tensor, position if n > 1 else 0))
        if node.op == "Equal" and any(isinstance(a, int) and a < 0 for a in args) and \
                any(isinstance(a, tuple) for a in args):
            return 0
        if not all(isinstance(a, int) for a in args):
            return None
        value = _SHAPE_MATH[node.op](*args)
        return None if value is None else int(value)


_SHAPE_MATH = {"Equal": lambda a, b: a == b, "Add": lambda a, b: a + b,
               "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b,
               "Div": lambda a, b: int(a / b) if b else None, "Max": max, "Min": min}
