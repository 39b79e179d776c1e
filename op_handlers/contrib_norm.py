"""onnxruntime's fused normalisations and activations: SimplifiedLayerNormalization (RMSNorm, registered by
onnxruntime in the default domain), SkipLayerNormalization and SkipSimplifiedLayerNormalization (residual add
fused with LayerNorm/RMSNorm, com.microsoft), EmbedLayerNormalization (word + position + segment embedding
lookups fused with LayerNorm, com.microsoft), and FastGelu, BiasGelu, QuickGelu (com.microsoft).

The norms normalise over the hidden width, so pruning it is not mask-exact, as for ONNX's LayerNormalization
(``onnxprune.op_handlers.normalization``); the activations are elementwise with a per-channel bias."""

from __future__ import annotations

from onnxprune.op_handlers.common import couple_broadcast, couple_identity_all
from onnxprune.op_handlers.normalization import LayerNormHandler

from onnxprune.handlers import AnalysisContext, OpHandler, register


@register("SimplifiedLayerNormalization")
class SimplifiedLayerNormHandler(LayerNormHandler):
    """Y = scale * X / rms(X) over axes [axis, rank) (optional second output: inv_std_var, size 1 on those axes)."""


@register("SkipLayerNormalization", "SkipSimplifiedLayerNormalization", domain="com.microsoft")
class SkipLayerNormHandler(OpHandler):
    """S = input + skip (+ bias); Y = gamma * normalise(S) (+ beta) over the last axis. Inputs: input, skip,
    gamma, then beta and bias (SkipLayerNormalization) or bias (the simplified one): every 1-D one is per hidden
    channel. Outputs: Y, mean, inv_std_var (size 1 on the last axis), and S (input_skip_bias_sum); an unread extra
    output whose shape is unknown (onnxruntime's shape inference leaves mean and inv_std_var out) is skipped."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        x, y = ctx.input(0), ctx.output(0)
        rank = ctx.rank(x)
        hidden = ctx.axis(x, rank - 1)
        couple_broadcast(ctx, [x, ctx.input(1)], y)
        for param in [t for t in node.inputs[2:] if t.name]:
            ctx.identity(ctx.axis(param, 0), hidden)
        for extra in [t for t in node.outputs[1:] if t.name and (t.shape is not None or t.outputs)]:
            if ctx.rank(extra) == rank and ctx.size(extra, rank - 1) == 1:
                for axis in range(rank - 1):
                    ctx.identity(ctx.axis(extra, axis), ctx.axis(x, axis))
            else:
                couple_identity_all(ctx, x, extra)
        ctx.inexact(hidden, f"{node.op} normalises over this axis")
        ctx.label(hidden, "normalized")

    def scale_inputs(self, node) -> list[int]:
        return [2]


@register("EmbedLayerNormalization", domain="com.microsoft")
class EmbedLayerNormHandler(OpHandler):
    """Y = LayerNorm(word[input_ids] + position[position_ids] + segment[segment_ids]) * gamma + beta over the
    hidden axis. Inputs: input_ids, segment_ids, word_embedding, position_embedding, segment_embedding, gamma, beta,
    mask, position_ids; outputs: Y, mask_index (per batch row, left as it is) and embedding_sum. The tables'
    columns, gamma, beta and both outputs' last axis are one hidden axis (not mask-exact); the tables' rows are
    looked up by id, so they cannot lose entries (blocked); the id and mask axes are batch/sequence axes."""

    TABLES, PARAMS, IDS = (2, 3, 4), (5, 6), (0, 1, 7, 8)

    def analyse(self, node, ctx: AnalysisContext) -> None:
        y = ctx.output(0)
        hidden = ctx.axis(y, ctx.rank(y) - 1)
        for table in [ctx.input(i) for i in self.TABLES if ctx.input(i) is not None]:
            ctx.identity(ctx.axis(table, 1), hidden)
            ctx.block(ctx.axis(table, 0), f"{ctx.where()} looks up rows of this table by id")
        ctx.producer(ctx.axis(ctx.input(2), 1))
        for param in [ctx.input(i) for i in self.PARAMS]:
            ctx.identity(ctx.axis(param, 0), hidden)
        for ids in [ctx.input(i) for i in self.IDS if ctx.input(i) is not None]:
            ctx.nonchannel_tensor(ids, range(ctx.rank(ids)))
        ctx.nonchannel_tensor(y, range(ctx.rank(y) - 1))
        if ctx.output(2) is not None:
            couple_identity_all(ctx, y, ctx.output(2))
        ctx.inexact(hidden, f"{node.op} normalises over this axis")
        ctx.label(hidden, "normalized")

    def scale_inputs(self, node) -> list[int]:
        return [5]


@register("FastGelu", "BiasGelu", "QuickGelu", domain="com.microsoft")
class BiasActivationHandler(OpHandler):
    """Y = act(X + bias) elementwise, bias (when given) per channel of the last axis."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        couple_broadcast(ctx, [t for t in node.inputs if t.name], ctx.output(0))
