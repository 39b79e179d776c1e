"""Progress bars with an ETA for the stages that can take a while (reconstruction, sensitivity, benchmarks).

Off by default, so the library prints nothing; the CLI turns bars on when stderr is a terminal and ``--quiet`` is
not given (its timed stage lines are printed either way, for logs). Bars are drawn by rich on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_ENABLED = False


def enable(on: bool = True) -> None:
    """Draw progress bars from now on (``on=False``: stop drawing them)."""
    global _ENABLED
    _ENABLED = on


def wanted(quiet: bool = False) -> bool:
    """Whether bars make sense: stderr is a terminal and the user did not ask for quiet."""
    return not quiet and sys.stderr.isatty()


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items``, drawing a bar with elapsed time and ETA while bars are enabled."""
    if not _ENABLED:
        yield from items
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total if total is not None else _length(items))
        for item in items:
            yield item
            bar.advance(task)


def _length(items) -> int | None:
    try:
        return len(items)
    except TypeError:
        return None
