"""The nodes of the dependency graph: one dimension of one tensor, and the records handlers attach to them."""

from __future__ import annotations

from typing import NamedTuple


class ChannelAxis(NamedTuple):
    """Dimension ``axis`` of the tensor named ``tensor`` (an activation or a constant such as a weight)."""

    tensor: str
    axis: int

    def __str__(self) -> str:
        return f"{self.tensor}[axis {self.axis}]"
