"""Model inputs made up when the user gave none, chosen so the model can really run on them.

Integer inputs that index a table (token ids, type ids, positions: Gather on a constant) are drawn below that
table's size; integer masks are drawn from {0, 1}; symbolic batch dims take ``batch``; other symbolic dims (image
height and width, sequence length) take the first candidate size at which onnxruntime runs the model, so a
detector whose Resize needs a large enough image or a stride-32 backbone still gets inputs it accepts. Sizes the
user gives by dim name always win.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from onnxprune.errors import OnnxPruneError
from onnxprune.ir.export import ExportedModel

# Ops through which an integer input keeps its values (so the table it finally indexes bounds it).
_VALUE_PRESERVING = {"Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Expand", "Transpose",
                     "Slice", "Tile"}
# Ops whose input 1 indexes input 0 along an attribute (default 0): {op: that attribute's name}.
_INDEXING = {"Gather": "axis", "GatherElements": "axis", "ScatterElements": "axis", "Scatter": "axis",
             "GatherBlockQuantized": "gather_axis"}  # com.microsoft: a blockwise-quantized embedding table
# Fused lookups: {op: {id input index: index of the table input whose rows (axis 0) it indexes}}.
_LOOKUPS = {"EmbedLayerNormalization": {0: 2, 1: 4, 8: 3}}  # input_ids, segment_ids, position_ids (com.microsoft)
# Symbolic sizes tried, in order, for dims that are neither the batch nor given by the user.
SPATIAL_CANDIDATES = (64, 32, 128, 224, 256, 320, 512)
SEQUENCE_CANDIDATES = (16, 8, 32, 64, 128)


class InputError(OnnxPruneError):
    """No made-up input runs the model: the message names the symbolic dims to give with --input-shape."""


@dataclass
class InputSpec:
    """One graph input as the session sees it: name, numpy dtype, shape (ints and dim names)."""

    name: str
    dtype: np.dtype
    shape: list


def integer_bounds(model: onnx.ModelProto) -> dict[str, int]:
    """{integer graph input: exclusive upper bound} for inputs whose values index a constant table along a
    Gather's axis or the rows of a fused lookup's table (EmbedLayerNormalization's word, segment and position
    tables), followed through ops that keep values, such as Cast, Unsqueeze, Reshape."""
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            consumers[name].append((node, k))
    tables = {t.name: list(t.dims) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            tables[node.output[0]] = list(node.attribute[0].t.dims)
    for node in model.graph.node:  # tables read through a cast or dequantization keep their shape
        if node.op_type in ("Cast", "Identity", "DequantizeLinear") and node.input and node.input[0] in tables:
            tables[node.output[0]] = tables[node.input[0]]
        elif node.op_type == "Reshape" and node.input[0] in tables:  # a table reshaped by a constant target
            target = _constant_values(model, node.input[1])
            if target is not None and target.count(-1) <= 1:
                dims = [tables[node.input[0]][k] if d == 0 else d for k, d in enumerate(target)]
                if -1 in dims:
                    dims[dims.index(-1)] = int(np.prod(tables[node.input[0]])) // -int(np.prod(dims))
                tables[node.output[0]] = dims
    bounds = {}
    for inp in model.graph.input:
        if inp.type.tensor_type.elem_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            continue
        found, seen, frontier = [], {inp.name}, [inp.name]
        while frontier:
            name = frontier.pop()
            for node, k in consumers.get(name, []):
                if node.op_type in _INDEXING and k == 1 and node.input[0] in tables:
                    axis = next((a.i for a in node.attribute if a.name == _INDEXING[node.op_type]), 0)
                    dims = tables[node.input[0]]
                    found.append(dims[axis % len(dims)])
                elif k in _LOOKUPS.get(node.op_type, {}):
                    table = _LOOKUPS[node.op_type][k]
                    if table < len(node.input) and node.input[table] in tables:
                        found.append(tables[node.input[table]][0])
                elif node.op_type in _VALUE_PRESERVING and k == 0:
                    for out in node.output:
                        if out not in seen:
                            seen.add(out)
                            frontier.append(out)
        if found:
            bounds[inp.name] = int(min(found))
    return bounds


def _constant_values(model: onnx.ModelProto, name: str) -> list[int] | None:
    """The values of a small integer initializer or Constant node output ``name`` (a Reshape target), else None."""
    for init in model.graph.initializer:
        if init.name == name and len(init.dims) == 1 and init.data_location != onnx.TensorProto.EXTERNAL:
            return [int(v) for v in onnx.numpy_helper.to_array(init)]
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name and node.attribute and node.attribute[0].HasField("t"):
            return [int(v) for v in onnx.numpy_helper.to_array(node.attribute[0].t).reshape(-1)]
    return None


def _specs(session: ort.InferenceSession) -> list[InputSpec]:
    types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
             "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}
    specs = []
    for inp in session.get_inputs():
        if inp.type not in types:
            raise InputError(f"cannot make data for input '{inp.name}' of type {inp.type}; give calibration data")
        specs.append(InputSpec(inp.name, np.dtype(types[inp.type]), list(inp.shape)))
    return specs


def random_inputs(session: ort.InferenceSession, batch: int = 2, seed: int = 0, dims: dict[str, int] | None = None,
                  bounds: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Random feeds for every input: normal floats; integers below ``bounds[name]`` (default 16; masks, i.e. inputs
    named like one, 0 or 1); symbolic dims become ``dims[name]``, else ``batch``."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in _specs(session):
        shape = [d if isinstance(d, int) else (dims or {}).get(d, batch) for d in spec.shape]
        if spec.dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype.kind in "iu":
            high = (bounds or {}).get(spec.name, 2 if "mask" in spec.name.lower() else 16)
            feeds[spec.name] = rng.integers(0, max(1, high), size=shape).astype(spec.dtype)
        else:
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
    return feeds


def _sum_parts(dim: str, specs: Sequence[InputSpec]) -> list[str] | None:
    """The dims a symbolic dim written as a sum of other inputs' dims adds up (optimum's attention_mask
    'past_sequence_length + sequence_length'), else None."""
    named = {d for s in specs for d in s.shape if isinstance(d, str)}
    parts = [p.strip() for p in dim.split("+")]
    return parts if len(parts) > 1 and all(p in named for p in parts) else None


def _with_sums(specs: Sequence[InputSpec], sizes: dict[str, int], batch: int) -> dict[str, int]:
    """``sizes`` with every sum dim (``_sum_parts``) not given set to the sum of its parts' sizes."""
    found = dict(sizes)
    for dim in {d for s in specs for d in s.shape if isinstance(d, str)} - set(sizes):
        parts = _sum_parts(dim, specs)
        if parts:
            found[dim] = sum(sizes.get(p, batch) for p in parts)
    return found


def _free_dims(specs: Sequence[InputSpec], given: dict[str, int], spatial: tuple[int, ...] = SPATIAL_CANDIDATES,
               ) -> dict[str, tuple[int, ...]]:
    """Candidate sizes for every symbolic dim that is not a leading (batch) dim, not given and not a sum of other
    dims (``_sum_parts``: sized from its parts)."""
    leading = {s.shape[0] for s in specs if s.shape and not isinstance(s.shape[0], int)}
    free: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int) or dim in given or (dim in leading and dim not in free) or _sum_parts(dim, specs):
                continue
            image = len(spec.shape) == 4 and spec.dtype.kind == "f"
            free.setdefault(dim, spatial if image and axis > 0 else SEQUENCE_CANDIDATES)
    return {d: c for d, c in free.items() if d not in leading}


def total_stride(model: onnx.ModelProto) -> int:
    """The largest product of Conv/pooling strides along any path from an input (1 without strided ops): spatial
    sizes that are a multiple of it pass every downsampling and upsampling stage of a detector's neck evenly."""
    stride: dict[str, int] = {}
    for node in model.graph.node:  # nodes are in topological order in a valid model
        own = 1
        if node.op_type in ("Conv", "MaxPool", "AveragePool", "ConvInteger", "QLinearConv"):
            own = max((max(a.ints, default=1) for a in node.attribute if a.name == "strides"), default=1)
        reach = max((stride.get(name, 1) for name in node.input if name), default=1) * own
        for out in node.output:
            stride[out] = reach
    return max(stride.values(), default=1)


def spatial_candidates(model: onnx.ModelProto) -> tuple[int, ...]:
    """SPATIAL_CANDIDATES, multiples of the model's total stride first (and the stride times 2 and 4 when it is
    beyond them)."""
    step = total_stride(model)
    fitting = [c for c in SPATIAL_CANDIDATES if c % step == 0] or [step * 2, step * 4]
    return tuple(dict.fromkeys([*fitting, *SPATIAL_CANDIDATES]))


def export_hints(model: onnx.ModelProto) -> tuple[int, ...]:
    """Sizes the export itself records, in this order: static dims of Reshape outputs as ONNX's inference (with data
    propagation) finds them, then of the graph outputs; e.g. the sequence length a TorchScript export baked into its
    Reshape targets. Only consulted when the usual candidates fail."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        inferred = model
    infos = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
    reshaped = [infos[n.output[0]] for n in inferred.graph.node if n.op_type == "Reshape" and n.output[0] in infos]
    hints = []
    for info in [*reshaped, *inferred.graph.output]:
        hints += [d.dim_value for d in info.type.tensor_type.shape.dim if 2 <= d.dim_value <= 4096]
    return tuple(dict.fromkeys(hints))


def dims_from_shapes(specs: Sequence[InputSpec], shapes: dict[str, list] | None) -> dict[str, int]:
    """{symbolic dim: size} from the user's per-input shapes (``--input-shape``): a number at an axis the model
    declares symbolic sizes that dim; a name leaves it to be chosen. InputError for an unknown input or a rank
    that does not match."""
    by_name = {s.name: s for s in specs}
    dims: dict[str, int] = {}
    for name, shape in (shapes or {}).items():
        if name not in by_name:
            raise InputError(f"--input-shape names '{name}', but the model inputs are {sorted(by_name)}")
        declared = by_name[name].shape
        if len(declared) != len(shape):
            raise InputError(f"--input-shape {name}: {len(shape)} dims given, but the input has {len(declared)} "
                             f"({'x'.join(map(str, declared))})")
        for have, want in zip(declared, shape):
            if isinstance(want, int) and not isinstance(have, int):
                dims[have] = want
    return dims


def describe_feeds(feeds: dict[str, np.ndarray]) -> str:
    """'x=1x3x224x224, mask=1x16': the shapes of a feed dict, as --input-shape writes them."""
    return ", ".join(f"{name}={'x'.join(map(str, np.shape(a))) or 'scalar'}" for name, a in feeds.items())


def example_inputs(model: onnx.ModelProto | ExportedModel | str | os.PathLike, session: ort.InferenceSession,
                   batch: int = 2, seed: int = 0, dims: dict[str, int] | None = None,
                   shapes: dict[str, list] | None = None) -> dict[str, np.ndarray]:
    """Feeds the model runs on, sized in this order: the user's ``shapes`` (per input, ``--input-shape``) and
    ``dims`` (by dim name); what the graph implies (integer inputs below the tables they index,
    ``integer_bounds``; masks 0/1; spatial dims at a multiple of the total stride; after those, the export's own
    hints, ``export_hints``); batch dims ``batch``. Every other symbolic dim takes the first candidate size at
    which ``session`` runs. Raises InputError naming the dims to give when no candidate works."""
    proto = model.proto if isinstance(model, ExportedModel) else model
    if not isinstance(proto, onnx.ModelProto):
        proto = onnx.load(os.fspath(proto), load_external_data=False)
    bounds = integer_bounds(proto)
    specs = _specs(session)
    given = {**dims_from_shapes(specs, shapes), **(dims or {})}
    free = _free_dims(specs, given, spatial_candidates(proto))
    first_error, hinted = None, False
    k = 0
    while True:
        attempts = max((len(c) for c in free.values()), default=1)
        if k >= attempts:
            hints = () if hinted else export_hints(proto)
            hinted = True
            free = {d: tuple(dict.fromkeys([*c, *hints])) for d, c in free.items()}
            if k >= max((len(c) for c in free.values()), default=1):
                break
        tried = {d: c[min(k, len(c) - 1)] for d, c in free.items()}
        feeds = random_inputs(session, batch=batch, seed=seed, dims=_with_sums(specs, {**tried, **given}, batch),
                              bounds=bounds)
        if not free:
            return feeds
        try:
            session.run(None, feeds)
            return feeds
        except Exception as exc:
            first_error = first_error or " ".join(str(exc).split())[:300]
        k += 1
    tried_sizes = "; ".join(f"{d}: {', '.join(map(str, c))}" for d, c in sorted(free.items()))
    spec = next(s for s in specs if any(d in free for d in s.shape))
    example = f"{spec.name}:" + "x".join(str(d) if isinstance(d, int) else d.upper() if d in free else d
                                         for d in spec.shape)
    raise InputError(f"onnxruntime does not run the model on made-up inputs for its symbolic dims "
                     f"{', '.join(sorted(free))} (tried {tried_sizes}; first error: {first_error}); give real inputs "
                     f"with --calib or the sizes with --input-shape, e.g. --input-shape {example} with numbers for "
                     f"{', '.join(d.upper() for d in sorted(free))}")
