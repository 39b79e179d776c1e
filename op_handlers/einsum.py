"""Einsum: the equation names every axis by a letter, and the same letter is the same axis in every operand and
in the output (identity coupling), with numpy broadcasting of size-1 axes and of the ``...`` dims.

A letter repeated inside one operand (a diagonal, ``ii->i``) ties two axes of that operand together: blocked.
A constant operand's letters that reach the output and no other operand produce channels (``btd,hd->bth``: h).
Between two activations (attention written as ``bhqd,bhkd->bhqk``), static letters shared by both operands and the
output are per-head batch axes (labelled ``heads``) and contracted ones are inside each head (``head_dim``).
"""

from __future__ import annotations

from onnxprune.op_handlers.common import is_static, static_product

from onnxprune.handlers import AnalysisContext, OpHandler, ShapeView, register


def parse_equation(equation: str, ranks: list[int]) -> tuple[list[list[str]], list[str]]:
    """Per-operand and output axis letters, with ``...`` expanded into numbered pseudo-letters ('.0', '.1', ...)
    aligned to the right as numpy broadcasting does. Raises ValueError on a malformed equation."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"equation '{equation}' has {len(terms)} operands, the node {len(ranks)}")
    ellipsis = max((rank - len(term.replace("...", "")) for term, rank in zip(terms, ranks) if "..." in term),
                   default=0)

    def expand(term: str, rank: int | None) -> list[str]:
        if "..." not in term:
            return list(term)
        head, _, tail = term.partition("...")
        n = ellipsis if rank is None else rank - len(head) - len(tail)
        return list(head) + [f".{ellipsis - n + k}" for k in range(n)] + list(tail)

    operands = [expand(term, rank) for term, rank in zip(terms, ranks)]
    for term, letters, rank in zip(terms, operands, ranks):
        if len(letters) != rank:
            raise ValueError(f"equation term '{term}' does not match an operand of rank {rank}")
    if arrow:
        output = expand(rhs, None)
    else:  # implicit output: the ellipsis dims, then letters used exactly once, in alphabetical order
        counts = {}
        for letters in operands:
            for letter in letters:
                counts[letter] = counts.get(letter, 0) + 1
        output = [f".{k}" for k in range(ellipsis)] + sorted(c for c, n in counts.items()
                                                             if n == 1 and not c.startswith("."))
    return operands, output


@register("Einsum")
class EinsumHandler(OpHandler):
    """Y = einsum(equation, X_0, X_1, ...): every letter is one axis across operands and output."""

    def analyse(self, node, ctx: AnalysisContext) -> None:
        tensors = [t for t in node.inputs if t.name]
        y = ctx.output(0)
        try:
            operands, output = parse_equation(str(ctx.attr("equation")), [ctx.rank(t) for t in tensors])
        except ValueError as exc:
            ctx.block_all(str(exc))
            return
        places = {}  # letter -> [(tensor, axis)] of every operand and the output
        for tensor, letters in list(zip(tensors, operands)) + [(y, output)]:
            for axis, letter in enumerate(letters):
                if letters.count(letter) > 1:
                    ctx.block(ctx.axis(tensor, axis), f"{ctx.where()} takes a diagonal along this axis")
                    continue
                places.setdefault(letter, []).append((tensor, axis))
        activations = [t for t in tensors if not ctx.is_constant(t)]
        for letter, found in places.items():
            sizes = [ctx.shape(t)[a] for t, a in found]
            full = [(t, a) for (t, a), size in zip(found, sizes) if size != 1] or found[:1]
            for tensor, axis in full[1:]:
                ctx.identity(ctx.axis(full[0][0], full[0][1]), ctx.axis(tensor, axis))
            users = {t.name for t, _ in found if t is not y}
            consts = [(t, a) for t, a in found if t is not y and ctx.is_constant(t)]
            if len(users) == 1 and consts and letter in output:
                ctx.producer(ctx.axis(*consts[0]))
            if len(activations) >= 2 and all(any(t is a for t, _ in found) for a in activations) \
                    and is_static(sizes[0]) and sizes[0] > 1:
                tag = "heads" if letter in output else "head_dim"
                for tensor, axis in full:
                    ctx.label(ctx.axis(tensor, axis), tag)

    def macs(self, node, ctx: ShapeView) -> int:
        tensors = [t for t in node.inputs if t.name]
        operands, _ = parse_equation(str(ctx.attr("equation")), [ctx.rank(t) for t in tensors])
        sizes = {}
        for tensor, letters in zip(tensors, operands):
            for letter, dim in zip(letters, ctx.shape(tensor)):
                if is_static(dim) and dim > sizes.get(letter, 1):
                    sizes[letter] = dim
        return static_product(sizes.values()) if len(tensors) > 1 else 0
