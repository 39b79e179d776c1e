"""Load an ONNX model into onnx-graphsurgeon IR with constants folded and every tensor's shape inferred.

Shape inference runs on a weight-free view of the model (large initializers replaced by typed graph inputs), so
loading never copies weight data just to learn shapes.
"""

from __future__ import annotations

import faulthandler
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import shape_inference
from onnx_graphsurgeon.logger import G_LOGGER

from onnxprune.errors import ModelLoadError, ShapeError
from onnxprune.ir import copy_graph
from onnxprune.provenance import trace_sources

# Initializers with more elements than this are left out of the shape-inference view (shape-like constants such as
# Reshape targets are tiny and must stay in, because inference reads their values).
_VIEW_MAX_ELEMENTS = 64
_MAX_FOLD_ROUNDS = 6
# Initializers in external-data files with at least this many bytes are memory-mapped rather than read: their pages
# are read on first use, shared with the page cache, and copied only where a tensor is sliced.
_MAP_MIN_BYTES = 1 << 16


@dataclass
class LoadedModel:
    """A model ready for analysis: its graph in gs IR, plus what is needed to write it back the way it came."""

    graph: gs.Graph
    opset: int
    ir_version: int
    opset_imports: list = field(default_factory=list)
    path: str | None = None
    producer_name: str = ""
    producer_version: str = ""
    sources: dict = field(default_factory=dict)  # folded initializer -> (framework parameter, axes): provenance.py
    initializer_inputs: str = "protect"  # how initializers listed as graph inputs were treated (see load)
    external_data: bool = False  # the file kept (some) initializers in external data files; saving does the same


def read_model(source: str | os.PathLike | onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """Read an ONNX file or pass a ModelProto through; raise ModelLoadError clearly for anything that is not a
    well-formed model. External data is not read here (see ``map_external_data``)."""
    if isinstance(source, onnx.ModelProto):
        _check_structure(source, "the model")
        return source, None
    path = Path(source)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: file is empty")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for garbage input
        raise ModelLoadError(f"{path}: not a valid ONNX protobuf: the file is truncated, damaged or not a model "
                             f"({exc.__class__.__name__}: {exc})") from None
    if not model.graph.node:
        raise ModelLoadError(f"{path}: the file parsed but holds no ONNX graph nodes (is it an ONNX model?)")
    _check_structure(model, str(path))
    _EXTERNAL_FILES[str(path.resolve())] = external_files(model, path.parent)
    return model, str(path)


# Resolved model path -> the external data files it reads (save_model refuses to write over them).
_EXTERNAL_FILES: dict[str, set[str]] = {}


def external_files(model: onnx.ModelProto, base: Path) -> set[str]:
    """Resolved paths of the external data files that ``model`` (read from directory ``base``) refers to."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    found = set()
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            found.add(str((base / location).resolve()))
    return found


def source_files(source: str | os.PathLike) -> set[str]:
    """The model file ``source`` and every external data file it reads, as resolved paths."""
    path = Path(source).resolve()
    if str(path) not in _EXTERNAL_FILES and path.is_file():
        try:
            _EXTERNAL_FILES[str(path)] = external_files(onnx.load(str(path), load_external_data=False), path.parent)
        except Exception:
            _EXTERNAL_FILES[str(path)] = set()
    return {str(path), *_EXTERNAL_FILES.get(str(path), ())}


def _check_structure(model: onnx.ModelProto, where: str) -> None:
    """Refuse models that no runtime could load: unknown opset, op types ONNX does not define, names read but
    defined nowhere, or produced twice. (Types and shapes are checked by strict shape inference later.)"""
    _check_text(model, where)
    opset = default_opset(model)
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise ModelLoadError(f"{where} imports opset {opset} of the default domain, but the installed onnx "
                             f"{onnx.__version__} knows opsets up to {newest}")
    graph = model.graph
    defined = {t.name for t in graph.input} | {t.name for t in graph.initializer} | {""}
    defined |= {t.values.name for t in graph.sparse_initializer}
    for node in graph.node:
        for name in node.output:
            if name and name in defined:
                raise ModelLoadError(f"{where}: tensor '{name}' is defined twice (again by {node.op_type} node "
                                     f"'{node.name}')")
            defined.add(name)
    for node in graph.node:
        if node.domain in ("", "ai.onnx"):
            try:
                onnx.defs.get_schema(node.op_type, opset, "")
            except onnx.defs.SchemaError:
                raise ModelLoadError(f"{where}: node '{node.name}' has op type '{node.op_type}', which ONNX opset "
                                     f"{opset} does not define") from None
        for name in node.input:
            if name not in defined:
                raise ModelLoadError(f"{where}: {node.op_type} node '{node.name}' reads '{name}', which no node, "
                                     "initializer or graph input defines")
    for out in graph.output:
        if out.name not in defined:
            raise ModelLoadError(f"{where}: graph output '{out.name}' is defined by no node, initializer or input")
    _sort_nodes(model, where)


def _sort_nodes(model: onnx.ModelProto, where: str) -> None:
    """Put the nodes in topological order (ONNX requires it; some tools write graphs out of order), or refuse a
    graph with a cycle. Names a node's subgraphs read from outside count as its inputs."""
    graph = model.graph
    produced = {o for n in graph.node for o in n.output}
    needs = [(set(n.input) | _outer_reads(n)) & produced for n in graph.node]
    ready: set[str] = set()
    order, waiting = [], list(range(len(graph.node)))
    while waiting:  # one pass for a sorted graph
        placed, later = [], []
        for k in waiting:
            if needs[k] <= ready:
                placed.append(k)
                ready.update(graph.node[k].output)
            else:
                later.append(k)
        if not placed:
            raise ModelLoadError(f"{where}: the graph has a cycle through {graph.node[later[0]].op_type} node "
                                 f"'{graph.node[later[0]].name}'")
        order += placed
        waiting = later
    if order == list(range(len(graph.node))):
        return
    nodes = [graph.node[k] for k in order]
    del graph.node[:]
    graph.node.extend(nodes)


def _outer_reads(node: onnx.NodeProto) -> set[str]:
    """Names the subgraphs of ``node`` read without defining them."""
    names: set[str] = set()
    for attr in node.attribute:
        for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            defined = {t.name for t in sub.input} | {t.name for t in sub.initializer}
            defined |= {o for n in sub.node for o in n.output}
            for n in sub.node:
                names |= (set(n.input) | _outer_reads(n)) - defined
    return names


def _check_text(model: onnx.ModelProto, where: str) -> None:
    """Every string field must be text: protobuf hands back bytes for strings that are not valid UTF-8, as in a
    damaged file, and they would fail far from here."""
    from google.protobuf.descriptor import FieldDescriptor

    stack = [model]
    while stack:
        message = stack.pop()
        for descriptor, value in message.ListFields():
            values = value if is_repeated_field(descriptor) else [value]
            if descriptor.type == FieldDescriptor.TYPE_STRING:
                bad = next((v for v in values if not isinstance(v, str)), None)
                if bad is not None:
                    raise ModelLoadError(f"{where}: field '{descriptor.name}' holds {bad[:40]!r}, which is not "
                                         "valid UTF-8 text: the file is damaged")
            elif descriptor.type == FieldDescriptor.TYPE_MESSAGE:
                stack.extend(values)


def is_repeated_field(descriptor) -> bool:
    """Whether a protobuf field is repeated (for protobuf versions with and without ``is_repeated``)."""
    if hasattr(descriptor, "is_repeated"):
        return descriptor.is_repeated
    return descriptor.label == descriptor.LABEL_REPEATED


def _check_tensor_data(model: onnx.ModelProto, where: str, mapped: dict) -> None:
    """Every initializer (and Constant node value) in the file must hold as much data as its shape says (the
    memory-mapped ones, ``mapped``, were checked against their files)."""
    tensors = [t for t in model.graph.initializer if t.name not in mapped]
    tensors += [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.HasField("t")]
    for tensor in tensors:
        dtype = _mappable_dtype(tensor.data_type)
        if dtype is None or tensor.data_location == onnx.TensorProto.EXTERNAL:
            continue
        numel = int(np.prod(tensor.dims)) if tensor.dims else 1
        if tensor.HasField("raw_data"):
            held, needed = len(tensor.raw_data), numel * dtype.itemsize
        else:
            field = onnx.helper.tensor_dtype_to_field(tensor.data_type)
            held, needed = len(getattr(tensor, field)), numel * (2 if dtype.kind == "c" else 1)
        if held != needed and numel > 0:
            raise ModelLoadError(f"{where}: tensor '{tensor.name}' holds {held} values/bytes but its shape "
                                 f"{list(tensor.dims)} needs {needed}: the file is damaged")


def map_external_data(model: onnx.ModelProto, base: Path) -> dict[str, np.ndarray]:
    """Memory-map the large external-data initializers of ``model`` (read from directory ``base``) and read the
    other external tensors into the model; returns {initializer name: read-only array}. The mapped initializers
    are left in ``model`` without data (shape and type only). Raises ModelLoadError naming the tensor and file when
    a file is missing, outside ``base``, or too short."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    arrays: dict[str, np.ndarray] = {}
    maps: dict[Path, mmap.mmap] = {}
    for init in model.graph.initializer:
        if not uses_external_data(init):
            continue
        try:
            info = ExternalDataInfo(init)
        except ValueError as exc:
            raise ModelLoadError(f"cannot read external data: {exc}") from None
        dtype = _mappable_dtype(init.data_type)
        numel = int(np.prod(init.dims)) if init.dims else 1
        if dtype is None or numel * dtype.itemsize < _MAP_MIN_BYTES:
            continue
        file = _external_file(base, info.location, init.name)
        offset = info.offset or 0
        length = numel * dtype.itemsize
        if info.length is not None and info.length != length:
            raise ModelLoadError(f"external data of tensor '{init.name}' is {info.length} bytes long, but its shape "
                                 f"{list(init.dims)} needs {length}")
        size = file.stat().st_size
        if offset + length > size:
            raise ModelLoadError(f"external data file {file} is too short: tensor '{init.name}' needs bytes "
                                 f"{offset}..{offset + length}, the file has {size}")
        if file not in maps:
            with open(file, "rb") as f:
                maps[file] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        arrays[init.name] = np.frombuffer(maps[file], dtype=dtype, count=numel, offset=offset).reshape(init.dims)
        init.data_location = onnx.TensorProto.DEFAULT
        del init.external_data[:]
    try:
        onnx.load_external_data_for_model(model, str(base))
    except Exception as exc:
        raise ModelLoadError(f"cannot read external data ({exc})") from None
    return arrays


def release_pages(array: np.ndarray) -> None:
    """Drop the resident pages of the file mapping behind ``array`` (nothing for arrays in memory). They are read
    again from the page cache on the next use, so a big model's weights need not all stay resident at once."""
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    if isinstance(base, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        base.madvise(mmap.MADV_DONTNEED)


def _mappable_dtype(data_type: int) -> np.dtype | None:
    """The little-endian numpy dtype of an ONNX element type stored one element per itemsize bytes, else None
    (strings, 4-bit and float8 types are read by onnx instead)."""
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type))
    except Exception:
        return None
    return dtype.newbyteorder("<") if dtype.kind in "biufc" else None


def _external_file(base: Path, location: str, tensor: str) -> Path:
    file = (base / location).resolve()
    if not location or os.path.isabs(location) or not file.is_relative_to(base.resolve()):
        raise ModelLoadError(f"cannot read external data: tensor '{tensor}' points to '{location}', outside the "
                             f"model's directory {base}")
    if not (base / location).is_file() or (base / location).is_symlink():
        raise ModelLoadError(f"cannot read external data: file {base / location} of tensor '{tensor}' is missing "
                             "(or not a regular file)")
    return file


def default_opset(model: onnx.ModelProto) -> int:
    """The opset version of the default ONNX domain imported by ``model``."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise ModelLoadError("model imports no default-domain opset")


def set_input_shapes(model: onnx.ModelProto, input_shapes: dict[str, list[int | str]]) -> None:
    """Overwrite the declared shape of graph inputs (e.g. to make a dynamic dim static)."""
    inputs = {i.name: i for i in model.graph.input}
    for name, dims in input_shapes.items():
        if name not in inputs:
            raise ModelLoadError(f"--input-shape names '{name}', but the graph inputs are {sorted(inputs)}")
        tensor_type = inputs[name].type.tensor_type
        tensor_type.shape.Clear()
        for dim in dims:
            entry = tensor_type.shape.dim.add()
            if isinstance(dim, str):
                entry.dim_param = dim
            else:
                entry.dim_value = int(dim)
    del model.graph.value_info[:]  # shapes recorded for the old input shapes no longer hold


def infer_shapes(model: onnx.ModelProto, isolate: bool = False) -> None:
    """Infer every value's shape on a weight-free view and store the results in ``model.graph.value_info``."""
    view = onnx.ModelProto()
    view.ir_version = model.ir_version
    view.opset_import.extend(model.opset_import)
    view.functions.extend(model.functions)
    graph = view.graph
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    graph.value_info.extend(model.graph.value_info)  # the exporter's shapes, for ops ONNX cannot infer (GroupNorm)
    declared = {i.name for i in model.graph.input}
    for init in model.graph.initializer:
        if int(np.prod(init.dims)) <= _VIEW_MAX_ELEMENTS:
            graph.initializer.append(init)
        elif init.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    inferred = _infer_strictly(view, isolate=isolate)
    del model.graph.value_info[:]
    outputs = {o.name for o in model.graph.output}
    model.graph.value_info.extend(v for v in inferred.graph.value_info if v.name not in outputs)
    for out in model.graph.output:
        found = [o for o in inferred.graph.output if o.name == out.name]
        if found and not out.type.tensor_type.HasField("shape"):
            out.CopyFrom(found[0])


def _infer_strictly(view: onnx.ModelProto, isolate: bool = False) -> onnx.ModelProto:
    """Strict shape and type inference; when the model's own value_info contradicts it, once more without them
    (stale exporter shapes are common and harmless); ShapeError when the graph itself is inconsistent.

    ``isolate`` runs it in a forked process: ONNX's inference aborts the whole process on some malformed graphs
    (a failed C++ assertion), which must end in a clear refusal, not a crash."""
    infer = _infer_in_child if isolate and hasattr(os, "fork") else _infer
    try:
        return infer(view)
    except ShapeError:
        raise
    except Exception as exc:
        first = exc
    if view.graph.value_info:
        bare = onnx.ModelProto()
        bare.CopyFrom(view)
        del bare.graph.value_info[:]
        try:
            return infer(bare)
        except Exception:
            pass
    message = " ".join(str(first).split())
    raise ShapeError(f"the model is inconsistent (ONNX shape inference: {message})") from None


def _infer(view: onnx.ModelProto) -> onnx.ModelProto:
    return shape_inference.infer_shapes(view, check_type=True, strict_mode=True, data_prop=True)


def _infer_in_child(view: onnx.ModelProto) -> onnx.ModelProto:
    """``_infer`` in a forked child that sends back the inferred (weight-free) model or the error message."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Python cleanup, no messages of its own, just the answer
        os.close(read_end)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        faulthandler.disable()
        try:
            payload = b"+" + _infer(view).SerializeToString()
        except BaseException as exc:
            payload = b"-" + str(exc).encode("utf-8", "replace")
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        code = os.waitstatus_to_exitcode(status)
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        raise ShapeError(f"ONNX shape inference crashed on this model ({how}): the model is malformed")
    if payload[:1] == b"-":
        raise ValueError(payload[1:].decode("utf-8", "replace"))
    return onnx.load_model_from_string(payload[1:])


def fold_static_values(graph: gs.Graph) -> None:
    """Replace outputs that static shapes determine (per the handlers' ``static_value``) by constants."""
    from onnxprune.handler import ShapeView, UnknownShape, handler_for

    for node in graph.nodes:
        handler = handler_for(node)
        if handler is None or not node.outputs:
            continue
        try:
            value = handler.static_value(node, ShapeView(node))
        except UnknownShape:
            continue
        except Exception:  # a node that does not fit its op (malformed model): not folded; analysis blocks it
            continue
        if value is not None:
            out = node.outputs[0]
            out.to_constant(value)
            node.outputs.clear()


def refresh_shapes(graph: gs.Graph, opset_imports, ir_version: int) -> None:
    """Re-infer the shapes of ``graph``'s activations after folding, on a weight-free shallow copy."""
    view = copy_graph(graph)
    stand_ins: dict[str, gs.Variable] = {}
    for node in view.nodes:
        for i, tensor in enumerate(node.inputs):
            if isinstance(tensor, gs.Constant) and _numel(tensor) > _VIEW_MAX_ELEMENTS:
                if tensor.name not in stand_ins:
                    stand_ins[tensor.name] = gs.Variable(tensor.name, dtype=tensor.dtype, shape=list(tensor.shape))
                node.inputs[i] = stand_ins[tensor.name]
    listed = {t.name for t in view.inputs}
    view.inputs = [stand_ins.get(t.name, t) for t in view.inputs] + [v for n, v in stand_ins.items() if n not in listed]
    try:
        proto = gs.export_onnx(view, do_type_check=False)
    except Exception as exc:  # e.g. an empty list attribute, which onnx-graphsurgeon cannot write back
        raise ModelLoadError(f"cannot write the graph back: {exc}") from None
    del proto.opset_import[:]
    proto.opset_import.extend(opset_imports)
    proto.ir_version = ir_version
    try:
        inferred = shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise ShapeError(f"ONNX shape inference failed after constant folding: {exc}") from None
    tensors = graph.tensors()
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        tensor = tensors.get(info.name)
        if not isinstance(tensor, gs.Variable) or not info.type.tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in info.type.tensor_type.shape.dim]
        old = tensor.shape
        if old is not None and len(old) == len(dims):
            dims = [o if isinstance(o, int) and not isinstance(n, int) else n for o, n in zip(old, dims)]
        tensor.shape = dims
        if tensor.dtype is None and info.type.tensor_type.elem_type:
            tensor.dtype = onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
    complete_shapes(graph)


def complete_shapes(graph: gs.Graph) -> None:
    """Fill dims that shape inference left unknown but a handler can determine (``complete_shape``)."""
    from onnxprune.handler import ShapeView, UnknownShape, handler_for

    for node in graph.nodes:
        out = node.outputs[0] if node.outputs else None
        if not isinstance(out, gs.Variable) or (out.shape is not None and all(
                isinstance(d, int) or (isinstance(d, str) and not d.startswith("unk__")) for d in out.shape)):
            continue
        handler = handler_for(node)
        try:
            dims = handler.complete_shape(node, ShapeView(node)) if handler is not None else None
        except UnknownShape:
            dims = None
        except Exception:  # a node that does not fit its op (malformed model): left as is; analysis blocks it
            dims = None
        if dims is not None:
            out.shape = dims


def _numel(tensor: gs.Constant) -> int:
    # A Constant's shape is read from its (possibly lazy) values' metadata, without loading external data.
    return int(np.prod(tensor.shape)) if tensor.shape is not None else tensor.values.size


_CONSTANT_FORMS = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                   "value_ints": np.int64}


def normalize_constant_nodes(model: onnx.ModelProto) -> None:
    """Rewrite Constant nodes given as value_float(s)/value_int(s) into typed ``value`` tensors.

    onnx-graphsurgeon folds ``value_floats`` into float64 arrays although ONNX defines them as float32, which
    would change the element type of everything computed from them.
    """
    for node in model.graph.node:
        if node.op_type != "Constant" or len(node.attribute) != 1 or node.attribute[0].name not in _CONSTANT_FORMS:
            continue
        attr = node.attribute[0]
        value = onnx.helper.get_attribute_value(attr)
        array = np.array(value, dtype=_CONSTANT_FORMS[attr.name])
        del node.attribute[:]
        node.attribute.append(onnx.helper.make_attribute("value", onnx.numpy_helper.from_array(array)))


def _name_nodes(graph: gs.Graph) -> None:
    taken = {n.name for n in graph.nodes if n.name}
    for k, node in enumerate(graph.nodes):
        if not node.name:
            name = f"{node.op}_{k}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def _check_shapes(graph: gs.Graph) -> None:
    for tensor in graph.inputs:
        if tensor.shape is None:
            raise ShapeError(f"graph input '{tensor.name}' has no shape; give one with --input-shape "
                             f"{tensor.name}:D1xD2x...")
    for node in graph.nodes:
        if node.domain not in ("", "ai.onnx", None):
            continue
        for tensor in node.outputs:
            is_tensor = getattr(tensor, "type", "tensor_type") == "tensor_type"
            if isinstance(tensor, gs.Variable) and is_tensor and tensor.shape is None and tensor.outputs:
                raise ShapeError(f"shape of tensor '{tensor.name}' ({node.op} node '{node.name}') could not be "
                                 "inferred; give static input shapes with --input-shape NAME:D1xD2x...")


def load(source: str | os.PathLike | onnx.ModelProto, input_shapes: dict | None = None,
         strict_shapes: bool = True, initializer_inputs: str = "auto") -> LoadedModel:
    """Load ``source`` into gs IR: shapes inferred (symbolic dims kept), Constant nodes and static shape
    subgraphs folded, nodes named and sorted. Raises ModelLoadError / ShapeError with a clear message.

    ``initializer_inputs``: initializers the model also lists as graph inputs stay inputs either way; 'protect'
    treats them as overridable at run time (nothing reading them is folded, their groups are blocked), 'prune'
    as plain weights; 'auto' is 'prune' for IR version < 4, where the format requires every initializer to be
    listed as an input (so the listing says nothing about intent), else 'protect'."""
    model, path = read_model(source)
    try:
        arrays = map_external_data(model, Path(path).parent) if path is not None else {}
    except ModelLoadError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    _check_tensor_data(model, path or "the model", arrays)
    if input_shapes:
        model = _copy_if_given(model, path)
        set_input_shapes(model, input_shapes)
    opset = default_opset(model)
    normalize_constant_nodes(model)
    infer_shapes(model, isolate=path is not None)  # files come from users: a malformed one must not abort us
    G_LOGGER.severity = G_LOGGER.ERROR
    try:
        graph = gs.import_onnx(model)
    except Exception as exc:
        raise ModelLoadError(f"cannot import the graph: {exc}") from None
    tensors = graph.tensors()
    for name, values in arrays.items():
        if isinstance(tensors.get(name), gs.Constant):
            tensors[name].values = values
            tensors[name].data_location = None
    overridable = _keep_initializer_inputs(graph, model)
    sources = trace_sources(graph)  # before folding renames Transpose(W) and friends

    if initializer_inputs == "auto":
        initializer_inputs = "prune" if model.ir_version < 4 else "protect"
    if initializer_inputs == "prune":
        overridable = set()

    def keep(node: gs.Node) -> bool:  # what reads an overridable initializer is not constant
        return any(t.name in overridable for t in node.inputs)

    for _ in range(_MAX_FOLD_ROUNDS):  # folding makes more shapes static, which lets more shape subgraphs fold
        before = (len(graph.nodes), _shape_signature(graph))
        fold_static_values(graph)
        try:
            graph.fold_constants(fold_shapes=True, error_ok=True, should_exclude_node=keep)
            graph.cleanup(remove_unused_graph_inputs=False).toposort()
        except Exception as exc:  # a cycle, or a graph gs cannot rebuild
            raise ModelLoadError(f"cannot process the graph: {exc}") from None
        refresh_shapes(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
        if (len(graph.nodes), _shape_signature(graph)) == before:
            break
    _name_nodes(graph)
    if strict_shapes:
        _check_shapes(graph)
    return LoadedModel(graph=graph, opset=opset, ir_version=model.ir_version,
                       opset_imports=[(i.domain, i.version) for i in model.opset_import], path=path,
                       producer_name=model.producer_name, producer_version=model.producer_version,
                       external_data=path is not None and bool(_EXTERNAL_FILES.get(str(Path(path).resolve()))),
                       sources=sources, initializer_inputs=initializer_inputs)


def _shape_signature(graph: gs.Graph) -> list:
    """The activations' shapes, to see whether a folding round taught anything new."""
    return [(t.name, None if t.shape is None else tuple(t.shape))
            for t in graph.tensors().values() if isinstance(t, gs.Variable)]


def _keep_initializer_inputs(graph: gs.Graph, model: onnx.ModelProto) -> set[str]:
    """gs drops initializers from the graph inputs; put those the model lists as inputs back, in their place, so
    they stay overridable in the pruned model and the analysis protects them. Returns their names."""
    listed = [i.name for i in model.graph.input]
    overridable = {i.name for i in model.graph.initializer} & set(listed)
    if not overridable:
        return overridable
    tensors = graph.tensors()
    current = {t.name: t for t in graph.inputs}
    graph.inputs = [current.get(name, tensors.get(name)) for name in listed
                    if name in current or isinstance(tensors.get(name), gs.Constant)]
    return overridable


def _copy_if_given(model: onnx.ModelProto, path: str | None) -> onnx.ModelProto:
    if path is not None:
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy
