"""The contexts a handler works through: what it may declare during analysis (``AnalysisContext``), change
while rewriting a pruned graph (``RewriteContext``), and zero while the mask oracle is built (``OracleContext``).
Every edit of the graph goes through them, so a handler never reaches into other nodes itself."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.axes import ChannelAxis
from onnxprune.errors import PruneError
from onnxprune.handlers.record import AnalysisRecord
from onnxprune.ir.graph import all_nodes, fresh_name, owner_graph
from onnxprune.ir.shape_values import rule_for
from onnxprune.ir.shape_view import ShapeView, tensor_shape


class AnalysisContext(ShapeView):
    """What a handler may declare about one node during analysis; it records into a shared AnalysisRecord."""

    def __init__(self, node: gs.Node, record: AnalysisRecord, opset: int):
        super().__init__(node, opset)
        self._record = record

    @property
    def options(self):
        """The analysis options (see ``onnxprune.handlers.record.AnalysisOptions``)."""
        return self._record.options

    def axis(self, tensor: gs.Tensor, axis: int) -> ChannelAxis:
        """The ChannelAxis of ``tensor``'s dimension ``axis`` (negative axes counted from the end); ValueError for
        an axis the tensor does not have (an attribute out of its range: the core blocks the node)."""
        rank = self.rank(tensor)
        if not -rank <= axis < rank:
            raise ValueError(f"axis {axis} is out of range for tensor '{tensor.name}' of rank {rank}")
        return ChannelAxis(tensor.name, axis + rank if axis < 0 else axis)

    def identity(self, a: ChannelAxis, b: ChannelAxis) -> None:
        """Couple index i of ``a`` with index i of ``b``; both must have the same static size."""
        sa, sb = self._record.static_size(a), self._record.static_size(b)
        if sa is None and sb is None:
            self._follow_packed(a, b)
            return
        if sa is None or sb is None or sa != sb:
            for ax, other, other_size in ((a, b, sb), (b, a, sa)):
                if self._record.static_size(ax) is not None:
                    self.block(ax, f"{self.where()} couples it with {other} of size {other_size}")
            return
        idx = np.arange(sa)
        self._record.add_edge(a, b, idx, idx, self.node)

    def _follow_packed(self, a: ChannelAxis, b: ChannelAxis) -> None:
        """Two dynamic axes that are the same axis carry the same packed factor (see ``AnalysisRecord.pack``)."""
        packed = self._record.packed
        if (a in packed) == (b in packed):
            if a in packed and packed[a][:2] == packed[b][:2]:
                self.identity(packed[a][2], packed[b][2])
            elif a in packed:
                for ax in (a, b):
                    self.block(packed[ax][2], f"{self.where()} couples it with a differently packed axis")
            return
        known, other = (a, b) if a in packed else (b, a)
        factor, inner, virtual = packed[known]
        self.identity(virtual, self.pack(other, factor, inner))

    def packed(self, axis: ChannelAxis) -> tuple[int, bool, ChannelAxis] | None:
        """(factor, inner, packed axis) of a dynamic axis known to hold a static factor, or None."""
        return self._record.packed.get(axis)

    def pack(self, axis: ChannelAxis, factor: int, inner: bool) -> ChannelAxis:
        """Declare that dynamic ``axis`` holds static ``factor``; returns its packed axis (``AnalysisRecord.pack``)."""
        return self._record.pack(axis, factor, inner)

    def couple(self, a: ChannelAxis, b: ChannelAxis, idx_a: Sequence[int], idx_b: Sequence[int]) -> None:
        """Couple index ``idx_a[k]`` of ``a`` with ``idx_b[k]`` of ``b`` for every k (offsets, expansions, gates)."""
        if self._record.static_size(a) is None or self._record.static_size(b) is None:
            for ax in (a, b):
                if self._record.static_size(ax) is not None:
                    self.block(ax, f"{self.where()} couples it with a dynamic dimension")
            return
        self._record.add_edge(a, b, np.asarray(idx_a, dtype=np.int64), np.asarray(idx_b, dtype=np.int64), self.node)

    def block(self, axis: ChannelAxis, reason: str) -> None:
        """Forbid pruning every group that touches ``axis``; ``reason`` is shown to the user."""
        self._record.block(axis, reason)

    def block_tensor(self, tensor: gs.Tensor, reason: str) -> None:
        """Block every axis of ``tensor`` (no-op for tensors of unknown rank, which nothing can couple)."""
        shape = tensor_shape(tensor)
        for axis in range(len(shape or [])):
            self.block(ChannelAxis(tensor.name, axis), reason)

    def block_all(self, reason: str) -> None:
        """Block every axis of every input and output of the node."""
        for tensor in list(self.node.inputs) + list(self.node.outputs):
            if tensor.name:
                self.block_tensor(tensor, f"{reason} ({self.where()})")

    def nonchannel(self, axis: ChannelAxis) -> None:
        """Declare ``axis`` a batch, spatial or sequence axis: groups touching it are never channel groups."""
        self._record.nonchannel.add(axis)

    def nonchannel_tensor(self, tensor: gs.Tensor, axes: Iterable[int]) -> None:
        """Declare several axes of one tensor non-channel."""
        for axis in axes:
            self.nonchannel(self.axis(tensor, axis))

    def is_nonchannel(self, axis: ChannelAxis) -> bool:
        """Whether an earlier analysis round found ``axis`` to be a batch/spatial/sequence axis."""
        return axis in self._record.known_nonchannel

    def inexact(self, axis: ChannelAxis, reason: str) -> None:
        """Pruning a group through ``axis`` changes the other channels' values: the mask oracle does not apply."""
        self._record.inexact.setdefault(axis, reason)

    def label(self, axis: ChannelAxis, tag: str) -> None:
        """Name what ``axis`` is (``heads``: one unit per attention head; ``head_dim``: a position inside every
        head; ``normalized``: a normalisation's statistics run over it). Groups carry their members' labels, so
        the CLI can name them and selection can treat them apart (``heads_ratio``, ``no_hidden``)."""
        self._record.labels.setdefault(axis, set()).add(tag)

    def producer(self, axis: ChannelAxis) -> None:
        """Mark a weight axis that produces channels (Conv weight axis 0): preferred as a group's root."""
        self._record.producers.append(axis)

    def prefer_multiple(self, axis: ChannelAxis, multiple: int) -> None:
        """Fast kernels want the kept size of ``axis`` to be a multiple of ``multiple`` (a speed hint: selection
        rounds to it by default; correctness never depends on it)."""
        self._record.multiples[axis] = max(multiple, self._record.multiples.get(axis, 1))

    def equal_blocks(self, axis: ChannelAxis, blocks: int) -> None:
        """The indices of ``axis`` form ``blocks`` equal consecutive blocks, and a pruning must take the same count
        from every block and keep at least one in each (query heads inside the KV groups of grouped-query
        attention). Groups with a member so declared carry the constraint (``Group.blocks``); selection honours
        it and ``resolve`` refuses plans that break it."""
        size = self._record.static_size(axis)
        if size is None or blocks <= 1:
            return
        if size % blocks:
            self.block(axis, f"{self.where()} splits it into {blocks} equal blocks, but its size is {size}")
            return
        self._record.equal_blocks[axis] = blocks

    def keep_indices(self, axis: ChannelAxis, indices: Sequence[int], reason: str) -> None:
        """Forbid removing ``indices`` of ``axis`` while its other indices stay prunable (the KV channels of a
        packed QKV projection when only query heads are units): they are coupled to a virtual axis that is
        blocked with ``reason``, so every group holding one of them is blocked and the others are untouched."""
        idx = np.asarray(indices, dtype=np.int64)
        if self._record.static_size(axis) is None or not len(idx):
            return
        virtual = ChannelAxis(f"{axis.tensor}[axis {axis.axis}: kept by {self.node.name}]", 0)
        self._record.virtual_size(virtual, len(idx))
        self._record.add_edge(axis, virtual, idx, np.arange(len(idx)), self.node)
        self.block(virtual, f"{reason} ({self.where()})")

    def granularity(self, axis: ChannelAxis, block_size: int, reason: str) -> None:
        """Indices of ``axis`` can only be removed in whole aligned blocks of ``block_size`` (couples each block)."""
        size = self._record.static_size(axis)
        if size is None or block_size <= 1:
            return
        idx = np.arange(size)
        self._record.add_edge(axis, axis, idx, idx - idx % block_size, self.node)


class RewriteContext(ShapeView):
    """What a handler may change on one node after pruning: attributes and the constants that encode sizes."""

    def __init__(self, node: gs.Node, removed: dict[ChannelAxis, np.ndarray], sizes: dict[ChannelAxis, int],
                 graph: gs.Graph, opset: int, made: dict[str, list[gs.Constant]] | None = None):
        super().__init__(node, opset)
        self._removed = removed
        self._sizes = sizes
        self._graph = graph
        self._made = {} if made is None else made  # old tensor name -> constants set_input_values made from it

    def removed(self, tensor: gs.Tensor, axis: int) -> np.ndarray:
        """Sorted indices removed from ``tensor``'s ``axis`` (empty array if none)."""
        return self._removed.get(ChannelAxis(tensor.name, axis), np.empty(0, dtype=np.int64))

    def old_size(self, tensor: gs.Tensor, axis: int) -> int | None:
        """Static size of the axis before pruning."""
        return self._sizes.get(ChannelAxis(tensor.name, axis))

    def new_size(self, tensor: gs.Tensor, axis: int) -> int | None:
        """Static size of the axis after pruning."""
        old = self.old_size(tensor, axis)
        return None if old is None else old - len(self.removed(tensor, axis))

    def kept(self, tensor: gs.Tensor, axis: int) -> np.ndarray:
        """Sorted indices of the axis that survive."""
        return np.setdiff1d(np.arange(self.old_size(tensor, axis)), self.removed(tensor, axis))

    def set_attr(self, name: str, value) -> None:
        """Set attribute ``name`` of the node (``group``, ``hidden_size``, ``split``, Slice bounds before opset 10)."""
        self.node.attrs[name] = value

    def remove_attr(self, name: str) -> None:
        """Drop attribute ``name`` of the node if it has it (Split's ``num_outputs`` once sizes are given)."""
        self.node.attrs.pop(name, None)

    def set_input_values(self, i: int, values: np.ndarray) -> None:
        """Give input ``i`` new constant values, as a new tensor so that other users of the old one keep theirs.
        An absent optional input is added (empty inputs fill any gap before it). Readers of one constant that get
        equal new values (tied weights sliced alike) share one new constant (``made``, one per apply)."""
        inputs = self.node.inputs
        while len(inputs) <= i:
            inputs.append(gs.Variable.empty())
        base = inputs[i].name or f"{self.node.name}_input{i}"
        values = np.asarray(values)
        made = self._made.setdefault(base, []) if inputs[i].name else []
        same = next((c for c in made if c.dtype == values.dtype and tuple(c.shape) == values.shape
                     and np.array_equal(c.values, values)), None)  # readers of a shared constant keep sharing
        if same is None:
            same = gs.Constant(fresh_name(self._graph, base), values)
            made.append(same)
        inputs[i] = same

    def set_shape_value(self, i: int, position: int, value: int) -> None:
        """Set element ``position`` of the 1-D shape-like input ``i`` (Reshape target, Split sizes, Expand shape...).

        Follows the tensor back through Concat/Unsqueeze/Cast/Identity to the constant holding that element, and
        rewrites a private copy of it; raises PruneError naming the tensor if the element is computed at run time.
        """
        node, index = self.node, i
        while True:
            tensor = node.inputs[index]
            if isinstance(tensor, gs.Constant):
                values = np.array(tensor.values, copy=True)
                values.reshape(-1)[position] = value
                node.inputs[index] = gs.Constant(fresh_name(self._graph, tensor.name), values)
                return
            producer = tensor.inputs[0] if tensor.inputs else None
            source = rule_for(producer).value_source(producer, ShapeView(producer), position) \
                if producer is not None else None
            if source is None:
                raise PruneError(f"{self.node.op} node '{self.node.name}': element {position} of shape input "
                                 f"'{self.node.inputs[i].name}' is computed at run time and cannot be rewritten")
            if len(tensor.outputs) > 1:  # shared (exporters reuse one target for q, k, v): rewrite a copy
                producer = self._private_copy(producer)
                node.inputs[index] = producer.outputs[0]
            node, (index, position) = producer, source

    def scale_shape_value(self, i: int, position: int, num: int, den: int) -> None:
        """Multiply element ``position`` of the 1-D int64 shape-like input ``i`` by ``num / den`` at run time (the
        element is computed, a multiple of ``den``: a dynamic dim holding a pruned packed factor, ``B * heads``)."""
        tensor = self.node.inputs[i]
        length = int(self.shape(tensor)[0])
        scales = []
        for value, role in ((num, "num"), (den, "den")):
            array = np.ones(length, dtype=np.int64)
            array[position] = value
            scales.append(gs.Constant(fresh_name(self._graph, f"{tensor.name}_{role}"), array))
        product = gs.Variable(fresh_name(self._graph, f"{tensor.name}_scaled"), dtype=np.int64, shape=[length])
        result = gs.Variable(fresh_name(self._graph, f"{tensor.name}_rescaled"), dtype=np.int64, shape=[length])
        owner = owner_graph(self._graph, self.node)  # the node may sit in an If/Loop/Scan body
        at = next(k for k, n in enumerate(owner.nodes) if n is self.node)
        owner.nodes[at:at] = [
            gs.Node("Mul", name=fresh_name(self._graph, f"{self.node.name}_scale"), inputs=[tensor, scales[0]],
                    outputs=[product]),
            gs.Node("Div", name=fresh_name(self._graph, f"{self.node.name}_unscale"), inputs=[product, scales[1]],
                    outputs=[result])]
        self.node.inputs[i] = result

    def _private_copy(self, producer: gs.Node) -> gs.Node:
        """A copy of ``producer`` (same inputs, fresh outputs) placed right after it, for one consumer to own."""
        outputs = [gs.Variable(fresh_name(self._graph, t.name), dtype=t.dtype, shape=t.shape)
                   for t in producer.outputs]
        taken = {n.name for n in all_nodes(self._graph)}
        name = next(f"{producer.name}_copy{k}" for k in range(1, len(taken) + 2)
                    if f"{producer.name}_copy{k}" not in taken)
        copy = gs.Node(producer.op, name=name, attrs=dict(producer.attrs),
                       inputs=list(producer.inputs), outputs=outputs, domain=producer.domain)
        owner = owner_graph(self._graph, producer)  # the producer may sit in an If/Loop/Scan body
        owner.nodes.insert(next(k for k, n in enumerate(owner.nodes) if n is producer) + 1, copy)
        return copy


class OracleContext(ShapeView):
    """What a handler may do while the mask oracle is built: zero indices of constants on the node's inputs."""

    def __init__(self, node: gs.Node, removed: dict[ChannelAxis, np.ndarray], graph: gs.Graph):
        super().__init__(node)
        self._removed = removed
        self._graph = graph

    def removed(self, tensor: gs.Tensor, axis: int) -> np.ndarray:
        """Indices removed from ``tensor``'s ``axis`` by the plan."""
        return self._removed.get(ChannelAxis(tensor.name, axis), np.empty(0, dtype=np.int64))

    def zero_input(self, i: int, axis: int, indices: np.ndarray, fill: np.ndarray | float = 0) -> None:
        """Replace constant input ``i`` by a copy whose ``indices`` along ``axis`` are zero, or ``fill`` (what
        stands for zero: a quantized weight's zero point, broadcast over the selected entries)."""
        old = self.node.inputs[i]
        values = np.array(old.values, copy=True)
        index = [slice(None)] * values.ndim
        index[axis] = np.asarray(indices, dtype=np.int64)
        values[tuple(index)] = fill
        self.node.inputs[i] = gs.Constant(fresh_name(self._graph, old.name), values)
