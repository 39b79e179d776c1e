"""What handlers read and write while the analysis runs: the options (``AnalysisOptions``) and the record of
their declarations (``AnalysisRecord``: couplings between axis indices, blocks, non-channel axes, inexact axes,
labels, producer axes, preferred multiples and equal blocks)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.axes import ChannelAxis
from onnxprune.ir.shape_view import tensor_shape

ATTENTION_UNITS = ("kv_groups", "query_heads")


@dataclass
class AnalysisOptions:
    """Knobs of the analysis.

    protect_io: block the axes of graph inputs and outputs (default), except those in ``allowed_io_axes``.
    protect_initializer_inputs: also block initializers listed as graph inputs (set from the loader's policy).
    factor_policy: which factor of a split/merged axis (Reshape C -> heads x head_dim, channel shuffle) carries the
        pruning when several could: 'largest' (default: head_dim, shuffle width), 'leading' (heads), 'trailing'.
    repeat_policy: the factor policy at reshapes that merge copies made by Expand into one axis (grouped-query
        attention's repeat_kv, [b, kv, n_rep, t, hd] -> [b, kv * n_rep, t, hd]); None = factor_policy. With
        factor_policy 'leading', 'leading' here removes whole KV groups (a KV head with all its query heads) and
        'trailing' removes the same query heads from every KV group (every KV head stays).
    attention_units: what one unit of a fused grouped-query attention (com.microsoft GroupQueryAttention) is:
        'kv_groups' (default: a KV head with every query head that reads it; the KV cache follows) or 'query_heads'
        (one query head; the same count goes from every KV group, and KV heads and the cache stay). Both cannot be
        units of one analysis: a query head's channels would join its KV group's unit and its own.
    """

    protect_io: bool = True
    protect_initializer_inputs: bool = True
    allowed_io_axes: set[ChannelAxis] = field(default_factory=set)
    factor_policy: str = "largest"
    repeat_policy: str | None = None
    attention_units: str = "kv_groups"
    max_rounds: int = 4

    def __post_init__(self) -> None:
        if self.attention_units not in ATTENTION_UNITS:
            raise ValueError(f"attention_units must be one of {ATTENTION_UNITS}, got {self.attention_units!r}")


class AnalysisRecord:
    """Everything the handlers declared in one round."""

    def __init__(self, graph: gs.Graph, options: AnalysisOptions, known_nonchannel: set[ChannelAxis]):
        self.graph = graph
        self.options = options
        self.tensors = graph.tensors()
        self.known_nonchannel = known_nonchannel
        self.edges: list[tuple[ChannelAxis, ChannelAxis, np.ndarray, np.ndarray, str]] = []
        self.blocks: dict[ChannelAxis, list[str]] = defaultdict(list)
        self.nonchannel: set[ChannelAxis] = set()
        self.inexact: dict[ChannelAxis, str] = {}
        self.producers: list[ChannelAxis] = []
        self.labels: dict[ChannelAxis, set[str]] = {}
        self.multiples: dict[ChannelAxis, int] = {}
        self.equal_blocks: dict[ChannelAxis, int] = {}  # axis -> its units form this many equal consecutive blocks
        self.packed: dict[ChannelAxis, tuple[int, bool, ChannelAxis]] = {}  # see pack()
        self._sizes: dict[ChannelAxis, int | None] = {}

    def pack(self, axis: ChannelAxis, factor: int, inner: bool) -> ChannelAxis:
        """Declare that dynamic ``axis`` holds a static ``factor`` merged with a dynamic dim D (attention heads folded
        into the batch: [T, B*heads, hd]); index = d*factor + f when ``inner``, else f*D + d. Returns the *packed
        axis*: a virtual axis of size ``factor`` (not a tensor of the graph) that couples like any other, so the
        factor can be followed from the Reshape that merges it to the one that splits it out again."""
        if axis not in self.packed:  # a second declaration of another factor couples to the first (and blocks)
            virtual = ChannelAxis(f"{axis.tensor}[axis {axis.axis}: x{factor}{' inner' if inner else ' outer'}]", 0)
            self.packed[axis] = (factor, inner, virtual)
            self._sizes[virtual] = factor
        return self.packed[axis][2]

    def virtual_size(self, axis: ChannelAxis, size: int) -> None:
        """Give a virtual axis (not a tensor of the graph, see ``pack`` and ``AnalysisContext.keep_indices``) its
        size."""
        self._sizes[axis] = size

    def static_size(self, axis: ChannelAxis) -> int | None:
        """Static size of an axis, or None when dynamic or unknown."""
        if axis not in self._sizes:
            tensor = self.tensors.get(axis.tensor)
            shape = None if tensor is None else tensor_shape(tensor)  # constants: from metadata, values not read
            dim = shape[axis.axis] if shape is not None and axis.axis < len(shape) else None
            self._sizes[axis] = int(dim) if isinstance(dim, (int, np.integer)) and dim >= 0 else None
        return self._sizes[axis]

    def add_edge(self, a: ChannelAxis, b: ChannelAxis, ia: np.ndarray, ib: np.ndarray, node: gs.Node) -> None:
        """Record that index ia[k] of ``a`` is coupled with index ib[k] of ``b``."""
        if len(ia) != len(ib):
            raise ValueError(f"{node.op} node '{node.name}' coupled {len(ia)} indices of {a} with {len(ib)} of {b}")
        for axis, idx in ((a, ia), (b, ib)):
            size = self.static_size(axis)
            if len(idx) and (idx.min() < 0 or idx.max() >= size):
                raise ValueError(f"{node.op} node '{node.name}' coupled indices outside {axis} (size {size})")
        self.edges.append((a, b, ia, ib, node.name))

    def block(self, axis: ChannelAxis, reason: str) -> None:
        """Record a reason that forbids pruning through ``axis``."""
        if reason not in self.blocks[axis]:
            self.blocks[axis].append(reason)
