"""SplitToSequence read back by SequenceAt with constant positions (how torch's dynamo exporter writes chunk/split):
each SequenceAt output is a slice of the split input, coupled by offset; the split sizes are rewritten."""

from __future__ import annotations

import numpy as np

from onnxprune.handlers import AnalysisContext, OpHandler, RewriteContext, register


def _parts(node, ctx) -> list[int] | None:
    """Sizes of the pieces a SplitToSequence node makes along its axis, or None if not static."""
    x = node.inputs[0]
    axis = int(node.attrs.get("axis", 0)) % len(ctx.shape(x))
    total = ctx.shape(x)[axis]
    split = ctx.const(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1].name else None
    if not isinstance(total, int) or split is None:
        return None
    if split.ndim == 0:
        chunk = int(split)
        return [chunk] * (total // chunk) + ([total % chunk] if total % chunk else [])
    return [int(v) for v in split]


def _readers(node, ctx) -> list[tuple] | None:
    """(SequenceAt node, position) for every consumer, or None if any consumer is something else."""
    readers = []
    for user in node.outputs[0].outputs:
        position = ctx.const(user.inputs[1]) if user.op == "SequenceAt" and len(user.inputs) > 1 else None
        if position is None:
            return None
        readers.append((user, int(position)))
    return readers


@register("SplitToSequence")
class SplitToSequenceHandler(OpHandler):
    """S = [X[.., o_k : o_k + s_k, ..] for each part k] along ``axis``: the coupling is declared by the SequenceAt
    readers; this node only checks they are all constant reads, and rewrites the split sizes."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        if _parts(node, ctx) is None or _readers(node, ctx) is None or int(ctx.attr("keepdims", 1)) == 0:
            ctx.block_tensor(ctx.input(0), f"{ctx.where()}: split sizes or readers are not static")

    def rewrite(self, node, ctx: RewriteContext) -> None:
        x = ctx.input(0)
        axis = int(ctx.attr("axis", 0)) % ctx.rank(x)
        parts = _parts(node, ctx)
        removed = ctx.removed(x, axis)
        offsets = np.concatenate([[0], np.cumsum(parts)])
        sizes = [n - int(np.sum((removed >= lo) & (removed < lo + n))) for lo, n in zip(offsets[:-1], parts)]
        if len(node.inputs) > 1:
            ctx.set_input_values(1, np.array(sizes, dtype=np.int64))


@register("SequenceAt")
class SequenceAtHandler(OpHandler):
    """Y = sequence[position]: when the sequence comes from SplitToSequence, Y is a slice of its input."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        y = ctx.output(0)
        producer = node.inputs[0].inputs[0] if node.inputs[0].inputs else None
        position = ctx.const(ctx.input(1))
        if producer is None or producer.op != "SplitToSequence" or position is None:
            ctx.block_tensor(y, f"{ctx.where()} reads a sequence onnxprune cannot follow")
            return
        parts = _parts(producer, ctx)
        x = producer.inputs[0]
        axis = int(producer.attrs.get("axis", 0)) % ctx.rank(x)
        if parts is None:
            ctx.block_tensor(y, f"{ctx.where()}: split sizes are not static")
            return
        k = int(position) % len(parts)
        offset = int(np.sum(parts[:k]))
        for other in range(ctx.rank(y)):
            if other == axis:
                ctx.couple(ctx.axis(x, axis), ctx.axis(y, axis), offset + np.arange(parts[k]), np.arange(parts[k]))
            else:
                ctx.identity(ctx.axis(x, other), ctx.axis(y, other))
