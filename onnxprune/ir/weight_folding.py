"""Fold nodes that compute from weights alone (``Transpose(W)``, ``Identity(W)``, ``Reshape(W)``, ``Cast(W)``, ...)
without reading the weights.

Exporters often leave such nodes between a framework parameter and the op that uses it. onnx-graphsurgeon's
``fold_constants`` would evaluate them in onnxruntime, which copies every weight involved into a model, a session
and back. Here their outputs become constants whose values are

- a numpy view of the input (Identity, Transpose, and Reshape / Flatten / Squeeze / Unsqueeze of a contiguous
  array): no copy, and no page of a memory-mapped weight is read until the values are used;
- or computed on first use (``DeferredValues``: the node alone, run in onnxruntime as folding would have run it),
  for every other op and for inputs not in memory yet.

Shapes and element types come from shape inference, so analysis sees the same graph as after eager folding.

**No growth.** A node whose folded output would take more bytes than the inputs it reads (``grows``: zeros of a
static shape from ``ConstantOfShape(Shape(h))``, ``Range(0, N)``, a relative-position table gathered into a
[heads, L, L] bias, ``Expand``/``Tile`` of a constant) is not folded, by ordinary folding either: the written model
keeps the small subgraph, and its handlers rewrite the constant shape entries a pruned width sits in. A float value
grows too when it is small (``Range(0, 8)`` of three scalars); integer values of at most WEIGHT_MIN_ELEMENTS
elements (shapes, indices, axes) always fold. A grown value is folded only where a handler needs it as a constant
to prune (``needing_readers``: a Conv/Gemm/norm parameter slot, or a small value sliced where it meets an
activation, as a timestep embedding's frequencies), and the load says so (``LoadedModel.grown``).

**Shared sources.** A layout op folded on a weight that other nodes also read (a tied embedding reshaped for
GatherBlockQuantized, ``Transpose(W)`` beside ``Gather(W)``) leaves two constants of the same bytes. The layout ops
are recorded before folding (``layout_sources``), and ``refold_layouts`` puts them back in a written graph wherever
both constants are still there and still the same values under it (pruning slices both alike): the weight is stored
once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
from onnx_graphsurgeon.ir.tensor import LazyValues

from onnxprune.ir.graph import fresh_name

# Constants with more elements than this are weights (not shape-like values, which ordinary folding handles).
WEIGHT_MIN_ELEMENTS = 64
_RESHAPES = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}
_LAYOUTS = _RESHAPES | {"Identity", "Transpose"}
# What onnx-graphsurgeon never folds (quantized weights stay quantized), so neither do we.
_NEVER_FOLDED = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


class DeferredValues(LazyValues):
    """Constant values known by shape and element type, computed by ``compute`` when first read."""

    def __init__(self, name: str, shape, dtype, compute: Callable[[], np.ndarray]):
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self._compute = compute

    def load(self) -> np.ndarray:
        """Compute the values (each call computes them again; gs keeps the result in the Constant)."""
        values = np.asarray(self._compute())
        if values.shape != self.shape or values.dtype != self.dtype:
            raise ValueError(f"folding '{self.name}' gave {values.dtype}{list(values.shape)}, shape inference said "
                             f"{self.dtype}{list(self.shape)}")
        return values

    @property
    def tensor(self) -> onnx.TensorProto:
        """The values as a TensorProto (what onnx-graphsurgeon's exporter reads from lazy values)."""
        return onnx.numpy_helper.from_array(self.load(), self.name)

    def __str__(self) -> str:
        return f"DeferredValues (shape={self.shape}, dtype={self.dtype})"


# Inputs a handler reads as parameters (sliced on pruning): a grown value feeding one of these is folded anyway.
PARAMETER_SLOTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "BatchNormalization": (1, 2, 3, 4),
                   "InstanceNormalization": (1, 2), "LayerNormalization": (1, 2), "GroupNormalization": (1, 2),
                   "PRelu": (1,), "LSTM": (1, 2, 3), "GRU": (1, 2, 3), "RNN": (1, 2, 3)}


def _nbytes(tensor: gs.Tensor) -> int | None:
    """Bytes of a tensor of static shape and known type (from metadata; nothing loaded), else None."""
    shape, dtype = tensor.shape, tensor.dtype
    if shape is None or dtype is None or not all(isinstance(d, int) and d >= 0 for d in shape):
        return None
    try:
        return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    except TypeError:  # onnx types numpy has no dtype for (bfloat16, float8): size unknown
        return None


# Ops whose output can be much larger than their inputs: while their output shape is unknown (its size read from a
# shape computation not folded yet), they are not folded; a later round, with the shape inferred, decides.
MAY_GROW = {"Range", "ConstantOfShape", "Expand", "Tile", "OneHot", "EyeLike", "Resize", "Upsample", "Pad", "Gather",
            "GatherElements", "GatherND"}


def grows(node: gs.Node) -> bool | None:
    """Whether folding ``node`` would write a constant that takes more bytes than all its inputs together: any
    such float value, and integer/bool values of more than WEIGHT_MIN_ELEMENTS elements (smaller ones are shapes,
    indices and axes, which always fold); None when a size is unknown and ``node`` is one of MAY_GROW (then it
    cannot be told yet)."""
    if len(node.outputs) != 1 or node.op == "Constant":  # a Constant node's value is the model's own
        return False
    out = node.outputs[0]
    size = _nbytes(out)
    inputs = [_nbytes(t) for t in node.inputs if t.name]
    if size is None or None in inputs:
        return None if node.op in MAY_GROW else False
    if size <= sum(inputs):
        return False
    # integer/bool values this small are shapes, indices and axes: folded as ordinary folding does
    return int(np.prod(out.shape)) > WEIGHT_MIN_ELEMENTS or np.dtype(out.dtype).kind in "fc"


def needs_constant(node: gs.Node) -> bool:
    """Whether a handler needs ``node``'s output as a constant to prune (see ``needing_readers``)."""
    return bool(needing_readers(node))


def needing_readers(node: gs.Node) -> list[gs.Node]:
    """The readers that need ``node``'s output as a constant to prune: one that takes it as a parameter
    (PARAMETER_SLOTS, sliced by its handler); and, for a value of more than one and at most WEIGHT_MIN_ELEMENTS
    elements, the first op that meets it (or what constant computation makes of it: ``exp(-c * Range(0, 8))``,
    the frequencies of a timestep embedding) with an activation: its handler couples the value's axes with the
    activation's and slices it (while ``Range``, left in the graph, makes its axis a position axis, never a
    channel). A scalar, broadcast everywhere, is never sliced. Larger values stay subgraphs whose handlers rewrite
    the shape entries a pruned width sits in (the module docstring's 'No growth')."""
    out = node.outputs[0] if len(node.outputs) == 1 else None
    if out is None:
        return []
    readers = [reader for reader in out.outputs for k in PARAMETER_SLOTS.get(reader.op, ())
               if k < len(reader.inputs) and reader.inputs[k] is out]
    shape = out.shape
    if readers or shape is None or not all(isinstance(d, int) for d in shape):
        return readers
    if not 1 < int(np.prod(shape)) <= WEIGHT_MIN_ELEMENTS:
        return []
    return _meeting_activations(out, {}, set())


def _meeting_activations(value: gs.Tensor, memo: dict, seen: set) -> list[gs.Node]:
    """The nodes where ``value``, followed through nodes that compute from constants only, meets an activation."""
    found = []
    for reader in value.outputs:
        if id(reader) in seen:
            continue
        seen.add(id(reader))
        if all(_constant_computed(t, memo) for t in reader.inputs if t.name and t is not value):
            for out in reader.outputs:
                found += _meeting_activations(out, memo, seen)
        else:
            found.append(reader)
    return found


def computes_from_constants(node: gs.Node) -> bool:
    """Whether every input of ``node`` is a constant or computed from constants and static shapes only (so
    folding turns its outputs into constants)."""
    memo: dict = {}
    return all(_constant_computed(t, memo) for t in node.inputs if t.name)


def _constant_computed(tensor: gs.Tensor, memo: dict) -> bool:
    """Whether ``tensor`` is a constant, or computed from constants and static shapes only (what folding makes a
    constant)."""
    if isinstance(tensor, gs.Constant):
        return True
    if tensor.name not in memo:
        memo[tensor.name] = False  # a cycle (never in a valid graph) stays not constant
        producer = tensor.inputs[0] if tensor.inputs else None
        if producer is None or any(isinstance(v, gs.Graph) for v in producer.attrs.values()):
            memo[tensor.name] = False
        elif producer.op == "Shape":
            shape = producer.inputs[0].shape
            memo[tensor.name] = shape is not None and all(isinstance(d, int) for d in shape)
        else:
            memo[tensor.name] = all(_constant_computed(t, memo) for t in producer.inputs if t.name)
    return memo[tensor.name]


def is_weight(tensor: gs.Tensor) -> bool:
    """Whether ``tensor`` is a constant with more than WEIGHT_MIN_ELEMENTS elements (its shape is read from
    metadata; nothing is loaded)."""
    if not isinstance(tensor, gs.Constant):
        return False
    shape = tensor.shape
    return shape is not None and int(np.prod(shape)) > WEIGHT_MIN_ELEMENTS


@dataclass(frozen=True)
class LayoutFold:
    """A constant folded from a layout op of another constant: ``op`` (Identity, Transpose or one of the Reshape
    family), its ``source`` constant's name and, for Transpose, ``perm``."""

    op: str
    source: str
    perm: tuple[int, ...] | None = None


def layout_sources(graph: gs.Graph) -> dict[str, LayoutFold]:
    """{output name: LayoutFold} for every layout op of ``graph`` whose data input is a constant: what folding
    (ours or onnx-graphsurgeon's) will turn into a second constant of the same bytes (see ``refold_layouts``)."""
    folds = {}
    for node in graph.nodes:
        if node.op not in _LAYOUTS or node.domain not in ("", "ai.onnx", None) or len(node.outputs) != 1 \
                or not node.inputs or not isinstance(node.inputs[0], gs.Constant):
            continue
        perm = None
        if node.op == "Transpose":
            perm = tuple(node.attrs.get("perm", list(range(len(node.inputs[0].shape)))[::-1]))
        folds[node.outputs[0].name] = LayoutFold(node.op, node.inputs[0].name, perm)
    return folds


def fold_weight_nodes(graph: gs.Graph, opset_imports, ir_version: int, keep: Callable[[gs.Node], bool]) -> int:
    """Turn the output of every node whose inputs are all constants, at least one a weight, into a constant (a
    view or deferred values, see the module docstring). Nodes ``keep`` names, nodes with subgraphs or several
    outputs, and outputs whose shape or type is not static are left to ordinary folding; quantize/dequantize nodes,
    which ordinary folding never folds, stay. Returns how many."""
    folded = 0
    for node in graph.nodes:
        if len(node.outputs) != 1 or node.op in _NEVER_FOLDED or keep(node) or any(
                isinstance(v, (gs.Graph, gs.Node.AttributeRef)) for v in node.attrs.values()):
            continue
        inputs = [t for t in node.inputs if t.name]
        if not inputs or not all(isinstance(t, gs.Constant) for t in inputs) or not any(map(is_weight, inputs)):
            continue
        out = node.outputs[0]
        if out.dtype is None or out.shape is None or not all(isinstance(d, int) and d >= 0 for d in out.shape):
            continue
        values = _view(node, out) if node.domain in ("", "ai.onnx", None) else None
        if values is None:
            values = DeferredValues(out.name, out.shape, out.dtype, _runner(node, opset_imports, ir_version))
        out.to_constant(values)
        node.outputs.clear()
        folded += 1
    return folded


def _view(node: gs.Node, out: gs.Variable) -> np.ndarray | None:
    """The output of a layout op as a view of its in-memory input, or None (then it is deferred)."""
    source = node.inputs[0]._values
    if not isinstance(source, np.ndarray) or np.dtype(out.dtype) != source.dtype:
        return None
    if node.op == "Identity":
        return source
    if node.op == "Transpose":
        perm = node.attrs.get("perm", list(range(source.ndim))[::-1])
        view = np.transpose(source, perm)
    elif node.op in _RESHAPES and source.flags.c_contiguous and source.size == int(np.prod(out.shape)):
        view = source.reshape(out.shape)
    else:
        return None
    return view if list(view.shape) == list(out.shape) else None


def _runner(node: gs.Node, opset_imports, ir_version: int) -> Callable[[], np.ndarray]:
    """A function that runs ``node`` alone on its constant inputs in onnxruntime (as folding would have)."""
    op, domain, attrs = node.op, node.domain, dict(node.attrs)
    inputs = list(node.inputs)
    out = node.outputs[0]
    name, dtype, shape = out.name, out.dtype, list(out.shape)
    imports = list(opset_imports)

    def run() -> np.ndarray:
        consts = {t.name: gs.Constant(t.name, np.asarray(t.values)) for t in inputs if t.name}
        result = gs.Variable(name, dtype=dtype, shape=shape)
        copy = gs.Node(op, attrs=attrs, domain=domain, outputs=[result],
                       inputs=[consts[t.name] if t.name else gs.Variable.empty() for t in inputs])
        model = gs.export_onnx(gs.Graph(nodes=[copy], outputs=[result]), do_type_check=False)
        del model.opset_import[:]
        for imp in imports:
            model.opset_import.add(domain=imp.domain, version=imp.version)
        model.ir_version = ir_version
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run([name], {})[0]

    return run


def _current(constant: gs.Constant) -> np.ndarray:
    """The values of ``constant`` without keeping lazy ones computed in it (deferred slices stay deferred)."""
    values = constant._values
    return values.load() if isinstance(values, LazyValues) else np.asarray(values)


def refold_layouts(graph: gs.Graph, layout_folds: dict[str, LayoutFold]) -> int:
    """Where a folded layout constant and its source are both still in ``graph`` (the source has other readers)
    and the layout op still maps the one onto the other, let the readers read the layout op of the source again,
    so the bytes are stored once (module docstring, 'Shared sources'). Returns how many constants were refolded."""
    tensors = graph.tensors()
    refolded = 0
    for name, fold in layout_folds.items():
        folded, source = tensors.get(name), tensors.get(fold.source)
        if not (isinstance(folded, gs.Constant) and isinstance(source, gs.Constant)):
            continue
        if folded.dtype != source.dtype or int(np.prod(folded.shape)) != int(np.prod(source.shape)):
            continue
        if fold.op == "Transpose" and (fold.perm is None or len(fold.perm) != len(source.shape)):
            continue
        values = _current(source)
        moved = np.transpose(values, fold.perm) if fold.op == "Transpose" else values.reshape(folded.shape)
        if not np.array_equal(moved, _current(folded)):
            continue
        readers = list(folded.outputs)
        if fold.op == "Identity":
            replacement = source
        else:
            replacement = gs.Variable(name, dtype=folded.dtype, shape=list(folded.shape))
            folded.name = f"{name}_folded"  # detached below; the graph's cleanup drops it
            layout = fresh_name(graph, f"{name}_layout")
            if fold.op == "Transpose":
                node = gs.Node("Transpose", name=layout, attrs={"perm": list(fold.perm)}, inputs=[source],
                               outputs=[replacement])
            else:
                target = gs.Constant(layout, np.array(folded.shape, dtype=np.int64))
                node = gs.Node("Reshape", name=layout, inputs=[source, target], outputs=[replacement])
            graph.nodes.append(node)
        for reader in readers:
            for k, tensor in enumerate(reader.inputs):
                if tensor is folded:
                    reader.inputs[k] = replacement
        for k, out in enumerate(graph.outputs):
            if out is folded:
                graph.outputs[k] = replacement
        refolded += 1
    if refolded:
        graph.toposort()
    return refolded
