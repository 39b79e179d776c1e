"""Elementwise ops: unary ones keep every axis; n-ary ones follow numpy broadcasting (Add, Mul, Where, PRelu...)."""

from __future__ import annotations

from onnxprune.op_handlers.common import couple_broadcast, couple_identity_all

from onnxprune.handlers import AnalysisContext, OpHandler, register

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


@register(*BINARY)
class BroadcastHandler(OpHandler):
    """Y = f(A, B, ...) with numpy broadcasting of every input to Y's shape."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        couple_broadcast(ctx, [t for t in node.inputs if t.name], ctx.output(0))
