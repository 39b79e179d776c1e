"""Which nodes reading pruned channels can be refit, and how: each kind views its weight as per-group matrices
``[groups, outputs per group, features]`` (features = what one output row sums over), builds the matching design
rows from an input activation, and writes refit matrices and biases back into the pruned node.

A consumer is a node whose data input lost channels: Conv (grouped and depthwise too; im2col patches),
Gemm, MatMul with a constant 2-D weight (a following Add of a constant is its bias; one is added when there is
none), LSTM/GRU input weights W (the gate pre-activations X·Wᵀ + Wb). Nodes that mix channels in any other way
(normalisation over the pruned axis, attention scores, unknown ops) are not refit: ``find_consumers`` returns a
note for each instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs
from numpy.lib.stride_tricks import sliding_window_view

from onnxprune.axes import ChannelAxis
from onnxprune.ir.graph import fresh_name

# Ops that read pruned channels one by one (elementwise, per-channel affine, pooling, layout): nothing to refit.
PER_CHANNEL = {
    "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "CastLike", "Celu", "Clip", "Concat",
    "DequantizeLinear", "Div", "Dropout", "Elu", "Erf", "Exp", "Expand", "Flatten", "Gather", "Gelu",
    "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "HardSigmoid", "HardSwish", "Identity", "LeakyRelu",
    "Log", "LpPool", "Max", "MaxPool", "Mean", "Min", "Mish", "Mul", "Neg", "Pad", "Pow", "PRelu",
    "QuantizeLinear", "Reciprocal", "Relu", "Reshape", "Resize", "Selu", "Shape", "Sigmoid", "Sign", "Slice",
    "Softplus", "Softsign", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "ThresholdedRelu", "Tile",
    "Transpose", "Unsqueeze", "Upsample", "Where",
}
REASONS = {
    "LayerNormalization": "normalises over the pruned axis before any linear op",
    "GroupNormalization": "normalises over the pruned axis before any linear op",
    "InstanceNormalization": "normalises over the pruned axis before any linear op",
    "SimplifiedLayerNormalization": "normalises over the pruned axis before any linear op",
    "Softmax": "softmax over the pruned axis (an attention score path)",
    "ConvTranspose": "ConvTranspose refit is not implemented yet",
}


@dataclass
class Consumer:
    """One refittable node of the pruned graph: its data input ``x`` (channels on ``axis``), weight and bias.
    Subclasses say how the weight reads as matrices and how design rows are cut from ``x``."""

    node: gs.Node
    x: str
    axis: int
    weight: gs.Constant
    removed_out: np.ndarray
    out_axis: int = 0
    groups: int = 1
    source_groups: int = 1

    def bind(self, source: gs.Node) -> None:
        """Remember what the design of the original model's input needs from the original node ``source``."""
        self.source_groups = int(source.attrs.get("group", 1))

    def design_original(self, x: np.ndarray) -> np.ndarray:
        """Design rows of the original model's input ``x``, grouped like the pruned node's (see ``design``)."""
        return self.design(x)

    def design(self, x: np.ndarray) -> np.ndarray:
        """Design rows ``[rows, groups, features]`` of activation ``x`` (pruned or original)."""
        return np.moveaxis(x, self.axis, -1).reshape(-1, 1, x.shape[self.axis])

    @property
    def batch_axis(self) -> int:
        """The activation's sample axis (chunks of samples are cut along it)."""
        return 0

    @property
    def expansion(self) -> int:
        """At most how many design entries one activation entry becomes (kernel size for Conv), to size chunks."""
        return 1

    def matrices(self, weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(M ``[groups, out per group, features]``, b ``[groups, out per group]``) for a weight of this kind."""
        raise NotImplementedError

    def bias(self, node: gs.Node) -> np.ndarray | None:
        """The node's current bias values (None: it has none)."""
        raise NotImplementedError

    def write(self, graph: gs.Graph, matrices: np.ndarray, biases: np.ndarray) -> None:
        """Store refit matrices and biases into the pruned node (adding a bias where it had none)."""
        raise NotImplementedError

    def kept_original(self, weight: np.ndarray, bias: np.ndarray | None) -> tuple:
        """The original weight and bias (as ``bias`` returns it) with the removed output units dropped."""
        weight = np.delete(weight, self.removed_out, axis=self.out_axis)
        if bias is not None and bias.shape[-1] > 1:
            bias = np.delete(bias, self.removed_out, axis=-1)
        return weight, bias


class ConvConsumer(Consumer):
    """Conv: weight [Cout, Cin/g, k...] reads, per group, as [Cout/g, Cin/g * prod(k)] over im2col patches."""

    def _geometry(self, spatial: tuple) -> tuple:
        kernel = tuple(self.weight.values.shape[2:])
        attrs = self.node.attrs
        d = len(kernel)
        strides = tuple(attrs.get("strides", [1] * d))
        dilations = tuple(attrs.get("dilations", [1] * d))
        extent = tuple((k - 1) * dl + 1 for k, dl in zip(kernel, dilations))
        pads = list(attrs.get("pads", [0] * 2 * d))
        auto = attrs.get("auto_pad", "NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            for i in range(d):
                total = max((math.ceil(spatial[i] / strides[i]) - 1) * strides[i] + extent[i] - spatial[i], 0)
                small = total // 2
                pads[i], pads[i + d] = (small, total - small) if auto == "SAME_UPPER" else (total - small, small)
        elif auto == "VALID":
            pads = [0] * 2 * d
        return kernel, strides, dilations, extent, pads

    def design(self, x: np.ndarray) -> np.ndarray:
        kernel, strides, dilations, extent, pads = self._geometry(x.shape[2:])
        d = len(kernel)
        padded = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + d]) for i in range(d)])
        windows = sliding_window_view(padded, extent, axis=tuple(range(2, 2 + d)))
        windows = windows[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)
                          + tuple(slice(None, None, dl) for dl in dilations)]
        order = (0, *range(2, 2 + d), 1, *range(2 + d, 2 + 2 * d))
        rows = windows.transpose(order).reshape(-1, self.groups, x.shape[1] // self.groups * math.prod(kernel))
        return rows

    @property
    def expansion(self) -> int:
        return math.prod(self.weight.values.shape[2:])

    def design_original(self, x: np.ndarray) -> np.ndarray:
        if self.source_groups == self.groups:
            return self.design(x)
        # whole groups went (depthwise): keep the input channels of the groups whose outputs are kept
        cout = self.weight.values.shape[0] + len(self.removed_out)
        kept = np.setdiff1d(np.arange(cout), self.removed_out)
        groups = np.unique(kept // (cout // self.source_groups))
        width = x.shape[1] // self.source_groups
        return self.design(x[:, (groups[:, None] * width + np.arange(width)).reshape(-1)])

    def matrices(self, weight, bias):
        cout = weight.shape[0]
        m = weight.reshape(self.groups, cout // self.groups, -1)
        b = np.zeros(cout, weight.dtype) if bias is None else bias
        return m, b.reshape(self.groups, -1)

    def bias(self, node):
        return np.asarray(node.inputs[2].values) if len(node.inputs) > 2 and node.inputs[2].name else None

    def write(self, graph, matrices, biases):
        w = self.weight.values
        self.weight.values = matrices.reshape(w.shape).astype(w.dtype)
        values = biases.reshape(-1).astype(w.dtype)
        if len(self.node.inputs) > 2 and isinstance(self.node.inputs[2], gs.Constant):
            self.node.inputs[2].values = values
        else:
            set_input(self.node, 2, gs.Constant(fresh_name(graph, f"{self.node.name}_bias"), values))


class GemmConsumer(Consumer):
    """Gemm: Y = alpha * A' B' + beta * C; the matrix is alpha * B' transposed ([N, K]), the bias beta * C."""

    def _trans_b(self) -> bool:
        return bool(self.node.attrs.get("transB", 0))

    def design(self, x):
        x = x.T if self.node.attrs.get("transA", 0) else x
        return x.reshape(-1, 1, x.shape[1])

    @property
    def batch_axis(self) -> int:
        return 1 if self.node.attrs.get("transA", 0) else 0

    def matrices(self, weight, bias):
        alpha, beta = self.node.attrs.get("alpha", 1.0), self.node.attrs.get("beta", 1.0)
        m = alpha * (weight if self._trans_b() else weight.T)
        b = np.zeros(m.shape[0], weight.dtype) if bias is None else beta * np.broadcast_to(bias, (m.shape[0],))
        return m[None], b[None]

    def bias(self, node):
        return np.asarray(node.inputs[2].values).reshape(-1) if len(node.inputs) > 2 and node.inputs[2].name \
            else None

    def write(self, graph, matrices, biases):
        alpha = self.node.attrs.get("alpha", 1.0)
        m = matrices[0] / alpha
        dtype = self.weight.values.dtype
        self.weight.values = (m if self._trans_b() else m.T).astype(dtype)
        self.node.attrs["beta"] = 1.0  # the refit bias is written as a new [N] vector: C may have been a scalar
        set_input(self.node, 2, gs.Constant(fresh_name(graph, f"{self.node.name}_bias"), biases[0].astype(dtype)))


class MatMulConsumer(Consumer):
    """MatMul X @ B with a constant [K, N] B: the matrix is Bᵀ; an Add of a constant [N] right after is its bias."""

    def _bias_add(self, node: gs.Node) -> gs.Constant | None:
        users = node.outputs[0].outputs
        if len(users) != 1 or users[0].op != "Add":
            return None
        other = [t for t in users[0].inputs if t is not node.outputs[0]]
        if len(other) != 1 or not isinstance(other[0], gs.Constant) or len(other[0].outputs) != 1:
            return None
        values = np.asarray(other[0].values)
        width = np.asarray(node.inputs[1].values).shape[1]
        return other[0] if values.ndim >= 1 and values.size == values.shape[-1] == width else None

    def matrices(self, weight, bias):
        b = np.zeros(weight.shape[1], weight.dtype) if bias is None else bias.reshape(-1)
        return weight.T[None], b[None]

    def bias(self, node):
        constant = self._bias_add(node)
        return None if constant is None else np.asarray(constant.values).reshape(-1)

    def write(self, graph, matrices, biases):
        dtype = self.weight.values.dtype
        self.weight.values = matrices[0].T.astype(dtype)
        constant = self._bias_add(self.node)
        if constant is not None:
            constant.values = biases[0].reshape(constant.values.shape).astype(dtype)
            return
        out = self.node.outputs[0]
        inner = gs.Variable(fresh_name(graph, out.name), dtype=out.dtype, shape=out.shape)
        self.node.outputs[0] = inner
        bias = gs.Constant(fresh_name(graph, f"{self.node.name}_bias"), biases[0].astype(dtype))
        graph.nodes.append(gs.Node("Add", name=fresh_name(graph, f"{self.node.name}_bias_add"),
                                   inputs=[inner, bias], outputs=[out]))


class RecurrentConsumer(Consumer):
    """LSTM/GRU input weights: W [dirs, gates*H, I] reads as one [dirs*gates*H, I] matrix; its bias is the Wb
    half of B ([dirs, 2*gates*H]), which is added when the node has no B."""

    @property
    def batch_axis(self) -> int:
        return 0 if self.node.attrs.get("layout", 0) else 1

    def matrices(self, weight, bias):
        dirs, rows, _ = weight.shape
        b = np.zeros((dirs, rows), weight.dtype) if bias is None else bias
        return weight.reshape(1, dirs * rows, -1), b.reshape(1, -1)

    def bias(self, node):
        if len(node.inputs) < 4 or not node.inputs[3].name:
            return None
        b = np.asarray(node.inputs[3].values)
        return b[:, : b.shape[1] // 2]

    def write(self, graph, matrices, biases):
        w = self.weight.values
        dtype = w.dtype
        self.weight.values = matrices.reshape(w.shape).astype(dtype)
        wb = biases.reshape(w.shape[0], w.shape[1]).astype(dtype)
        if len(self.node.inputs) > 3 and isinstance(self.node.inputs[3], gs.Constant):
            b = np.array(self.node.inputs[3].values)
            b[:, : w.shape[1]] = wb
            self.node.inputs[3].values = b
        else:
            b = np.concatenate([wb, np.zeros_like(wb)], axis=1)
            set_input(self.node, 3, gs.Constant(fresh_name(graph, f"{self.node.name}_B"), b))


def set_input(node: gs.Node, index: int, tensor: gs.Tensor) -> None:
    """Make ``tensor`` the node's input ``index``, filling skipped optional inputs with empty names."""
    while len(node.inputs) < index:
        node.inputs.append(gs.Variable.empty())
    if len(node.inputs) == index:
        node.inputs.append(tensor)
    else:
        node.inputs[index] = tensor


def _constant_weight(node: gs.Node, index: int) -> gs.Constant | str:
    if len(node.inputs) <= index or not isinstance(node.inputs[index], gs.Constant):
        return "its weight is not a constant (QDQ or computed weights are not refit yet)"
    weight = node.inputs[index]
    if not np.issubdtype(np.asarray(weight.values).dtype, np.floating):
        return "its weight is not a float tensor"
    if len(weight.outputs) > 1:
        return "its weight is shared with other nodes"
    return weight


def consumer_for(node: gs.Node, removed: dict[ChannelAxis, np.ndarray]) -> Consumer | str | None:
    """The Consumer for ``node`` of the pruned graph, a reason why it cannot be refit, or None when it reads no
    pruned channel or mixes none (per-channel ops)."""
    inputs = [t for t in node.inputs if isinstance(t, gs.Variable)]
    pruned = [t for t in inputs if t.shape is not None and any(ChannelAxis(t.name, a) in removed
                                                               for a in range(len(t.shape)))]
    if not pruned or node.op in PER_CHANNEL or (node.op.startswith("Reduce") and not _reduces_pruned(node, removed)):
        return None
    x = node.inputs[0]
    if node.op in ("LSTM", "GRU") and x not in pruned:
        return None  # only its initial states lost units: they are per unit, nothing mixes them
    if node.op == "MatMul" and all(isinstance(t, gs.Variable) for t in node.inputs):
        return "both operands are activations (an attention path)"
    if node.op in ("Conv", "Gemm", "MatMul") and (not isinstance(x, gs.Variable) or x not in pruned):
        return "its pruned input is not the data input"
    if node.op == "Conv":
        axis, wi, out_axis = 1, 1, 0
    elif node.op == "Gemm":
        axis, wi = (0 if node.attrs.get("transA", 0) else 1), 1
        out_axis = 0 if node.attrs.get("transB", 0) else 1
    elif node.op == "MatMul":
        axis, wi, out_axis = len(x.shape) - 1, 1, 1
    elif node.op in ("LSTM", "GRU"):
        axis, wi, out_axis = 2, 1, 1
    else:
        return REASONS.get(node.op, f"{node.op} mixes channels in a way onnxprune does not refit")
    if ChannelAxis(x.name, axis) not in removed:
        return None
    weight = _constant_weight(node, wi)
    if isinstance(weight, str):
        return weight
    if node.op == "MatMul" and weight.values.ndim != 2:
        return "its weight is not a 2-D matrix"
    if node.op == "Gemm" and len(node.inputs) > 2 and isinstance(node.inputs[2], gs.Constant) \
            and node.inputs[2].values.size not in (1, weight.values.shape[out_axis]):
        return "its bias C is not a vector over the outputs"
    if len(node.inputs) > 2 and node.op in ("Conv", "Gemm") and node.inputs[2].name \
            and not isinstance(node.inputs[2], gs.Constant):
        return "its bias is not a constant"
    if node.op in ("LSTM", "GRU") and len(node.inputs) > 3 and node.inputs[3].name \
            and not isinstance(node.inputs[3], gs.Constant):
        return "its bias B is not a constant"
    removed_out = removed.get(ChannelAxis(weight.name, out_axis), np.zeros(0, dtype=np.int64))
    kind = {"Conv": ConvConsumer, "Gemm": GemmConsumer, "MatMul": MatMulConsumer}.get(node.op, RecurrentConsumer)
    groups = int(node.attrs.get("group", 1)) if node.op == "Conv" else 1
    return kind(node, x.name, axis, weight, np.asarray(removed_out), out_axis, groups)


def _reduces_pruned(node: gs.Node, removed: dict[ChannelAxis, np.ndarray]) -> bool:
    """Whether a Reduce* node sums over a pruned axis of its input (unknown axes count as yes)."""
    x = node.inputs[0]
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and isinstance(node.inputs[1], gs.Constant):
        axes = np.asarray(node.inputs[1].values).reshape(-1).tolist()
    if axes is None or x.shape is None:
        return True
    rank = len(x.shape)
    return any(ChannelAxis(x.name, a % rank) in removed for a in axes)


def find_consumers(graph: gs.Graph, removed: dict[ChannelAxis, np.ndarray]) -> tuple[list[Consumer], list[str]]:
    """The refittable consumers of ``graph`` (pruned) in topological order, and a note for every node that reads
    pruned channels, mixes them and cannot be refit."""
    consumers, notes = [], []
    for node in graph.nodes:
        found = consumer_for(node, removed)
        if isinstance(found, Consumer):
            consumers.append(found)
        elif isinstance(found, str):
            notes.append(f"{node.op} node '{node.name}' not refit: {found}")
    return consumers, notes
