"""Sizes computed from symbolic dims, learned by evaluating them with stand-in values.

A shape computation over symbolic dims (``-1`` of Reshape([B*N, -1]) on a [B, N, C] tensor, a Slice ending at
Shape(t)) is run a few times, each time with other stand-in values for the symbols. An entry that comes out the same
every time does not depend on them (the merged factor ``C``); one that equals a symbol's stand-in every time is that
symbol; anything else depends on the symbols some other way (``B*N``). Rounds: every symbol 1, then distinct small
primes, then distinct large primes, so that ``min(s, 2)`` or a slice ``[:2]`` is not mistaken for a constant.
Symbols are taken to be independent and at least 1 (a dim of size 0 is not considered); two symbols that are equal
at run time only make fewer entries constant, never a wrong one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Dim = int | str | None
SizeOf = Callable[[Dim], int]

_ROUNDS = ((1,) * 64,
           (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97),
           (1009, 1013, 1019, 1021, 1031, 1033, 1039, 1049, 1051, 1061, 1063, 1069, 1087, 1091, 1093, 1097))


class NoStandIn(Exception):
    """A dim has no name (unknown rank or None), or more symbols than stand-ins: the value cannot be learned."""


def evaluate_with_stand_ins(compute: Callable[[SizeOf], list[int] | None]) -> list[Dim] | None:
    """Run ``compute(size_of)`` once per round (``size_of(dim)``: an int dim is itself, a symbol its stand-in) and
    classify each entry of the result: an int (the same every round), a symbol (that symbol's stand-in every round)
    or None (depends on the symbols otherwise). None when a round fails (``compute`` returns None or raises
    NoStandIn) or the rounds disagree on the length."""
    symbols: dict[str, int] = {}

    def stand_in(values: tuple[int, ...]) -> SizeOf:
        def size_of(dim: Dim) -> int:
            if isinstance(dim, (int, np.integer)) and dim >= 0:
                return int(dim)
            if not isinstance(dim, str) or not dim:
                raise NoStandIn(f"dim {dim!r} has no name")
            index = symbols.setdefault(dim, len(symbols))
            if index >= len(values):
                raise NoStandIn("too many symbolic dims")
            return values[index]
        return size_of

    results = []
    for values in _ROUNDS:
        try:
            result = compute(stand_in(values))
        except NoStandIn:
            return None
        if result is None or (results and len(result) != len(results[0])):
            return None
        results.append([int(v) for v in result])
    names = list(symbols)
    dims: list[Dim] = []
    for entry in zip(*results):
        if len(set(entry)) == 1:
            dims.append(entry[0])
            continue
        same = [name for k, name in enumerate(names)
                if all(k < len(values) and value == values[k] for value, values in zip(entry, _ROUNDS))]
        dims.append(same[0] if len(same) == 1 else None)
    return dims
