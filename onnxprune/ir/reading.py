"""Read ONNX files: refuse what no runtime could load (with the reason), sort nodes, and memory-map large
external-data initializers so their bytes are read only where a tensor is actually used."""

from __future__ import annotations

import functools
import mmap
import os
from pathlib import Path

import numpy as np
import onnx

from onnxprune.errors import ModelLoadError

# Initializers in external-data files with at least this many bytes are memory-mapped rather than read: their pages
# are read on first use, shared with the page cache, and copied only where a tensor is sliced.
_MAP_MIN_BYTES = 1 << 16


def read_model(source: str | os.PathLike | onnx.ModelProto,
               mapped: dict[str, np.ndarray] | None = None) -> tuple[onnx.ModelProto, str | None]:
    """Read an ONNX file or pass a ModelProto through; raise ModelLoadError clearly for anything that is not a
    well-formed model. External data is not read here (see ``map_external_data``).

    With a dict ``mapped``, the large initializers stored inside the file are not copied into the ModelProto: they
    are left there with shape and type only, and ``mapped`` receives them as read-only arrays memory-mapped from the
    file (``{name: array}``), whose pages are read only where values are used."""
    if isinstance(source, onnx.ModelProto):
        _check_structure(source, "the model")
        return source, None
    path = Path(source)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: file is empty")
    try:
        model = _load_without_raw_weights(path, mapped) if mapped is not None else None
        if model is None:
            model = onnx.load(str(path), load_external_data=False)
    except ModelLoadError:
        raise
    except Exception as exc:  # protobuf raises several types for garbage input
        hint = framework_hint(path)
        raise ModelLoadError(f"{path}: " + (hint or "not a valid ONNX protobuf: the file is truncated, damaged or not "
                                            f"a model ({exc.__class__.__name__}: {exc})")) from None
    if not model.graph.node:
        hint = framework_hint(path)
        raise ModelLoadError(f"{path}: " + (hint or "the file parsed but holds no ONNX graph nodes (is it an ONNX "
                                                    "model?)"))
    _check_structure(model, str(path))
    _EXTERNAL_FILES[str(path.resolve())] = external_files(model, path.parent)
    return model, str(path)


# Resolved model path -> the external data files it reads (save_model refuses to write over them).
_EXTERNAL_FILES: dict[str, set[str]] = {}
def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(buf, start: int, end: int):
    """(field number, wire type, field start, payload start, payload end) of each field of the message in
    ``buf[start:end]`` (protobuf wire format; groups are refused)."""
    pos = start
    while pos < end:
        key, body = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, stop = _varint(buf, body)
        elif wire == 1:
            stop = body + 8
        elif wire == 2:
            length, body = _varint(buf, body)
            stop = body + length
        elif wire == 5:
            stop = body + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if stop > end:
            raise ValueError("field runs past its message")
        yield number, wire, pos, body, stop
        pos = stop


# Field numbers (onnx.proto): ModelProto.graph, GraphProto.initializer, TensorProto.name, TensorProto.raw_data.
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_NAME, _TENSOR_RAW_DATA = 7, 5, 8, 9


def _load_without_raw_weights(path: Path, mapped: dict[str, np.ndarray]) -> onnx.ModelProto | None:
    """Parse ``path`` with the raw bytes of its large initializers left out of the ModelProto, and put those bytes
    into ``mapped`` as read-only numpy views of a memory map of the file: a weight's pages are read only where its
    values are used, and no weight is copied to load the graph. None when the file is not laid out as expected
    (the caller then reads it whole)."""
    with open(path, "rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError):
            return None
    try:
        graphs = [(body, stop) for number, wire, _, body, stop in _fields(buf, 0, len(buf))
                  if number == _MODEL_GRAPH and wire == 2]
        if len(graphs) != 1:
            return None
        graph_start, graph_end = graphs[0]
        cuts = []  # (initializer field start, payload start, payload end, raw_data field start, data start, end)
        for number, wire, field_start, body, stop in _fields(buf, graph_start, graph_end):
            if number != _GRAPH_INITIALIZER or wire != 2:
                continue
            inner = list(_fields(buf, body, stop))
            raw = [(f0, b0, s0) for n0, w0, f0, b0, s0 in inner if n0 == _TENSOR_RAW_DATA and w0 == 2]
            names = [bytes(buf[b0:s0]).decode("utf-8") for n0, w0, _, b0, s0 in inner if n0 == _TENSOR_NAME]
            if len(raw) == 1 and len(names) == 1 and raw[0][2] - raw[0][1] >= _MAP_MIN_BYTES:
                cuts.append((field_start, body, stop, *raw[0], names[0]))
    except (ValueError, IndexError):
        return None  # not a protobuf we can walk: onnx.load reports what is wrong with it
    if not cuts:
        return None
    view = memoryview(buf)
    graph_parts, pos = [], graph_start
    for field_start, body, stop, raw_start, _, data_end, _ in cuts:
        graph_parts.append(view[pos:field_start])
        tensor = b"".join((view[body:raw_start], view[data_end:stop]))
        graph_parts += [_encode_varint(_GRAPH_INITIALIZER << 3 | 2), _encode_varint(len(tensor)), tensor]
        pos = stop
    graph_parts.append(view[pos:graph_end])
    graph = b"".join(graph_parts)
    graph_field = [m for m in _fields(buf, 0, len(buf)) if m[0] == _MODEL_GRAPH and m[1] == 2][0]
    stripped = b"".join((view[:graph_field[2]], _encode_varint(_MODEL_GRAPH << 3 | 2), _encode_varint(len(graph)),
                         graph, view[graph_end:]))
    del graph_parts, graph, view
    model = onnx.load_model_from_string(stripped)
    spans = {name: (data_start, data_end) for *_, data_start, data_end, name in cuts}
    if len(spans) != len(cuts):
        return None  # two initializers of one name: _check_structure refuses the model, with its reason
    arrays = {}
    for init in model.graph.initializer:
        if init.name not in spans:
            continue
        start, end = spans[init.name]
        dtype = _mappable_dtype(init.data_type)
        numel = int(np.prod(init.dims)) if init.dims else 1
        if dtype is None or init.HasField("data_location") and init.data_location == onnx.TensorProto.EXTERNAL:
            return None  # a layout onnx reads better: give up the mapping
        if numel * dtype.itemsize != end - start:
            raise ModelLoadError(f"{path}: tensor '{init.name}' holds {end - start} values/bytes but its shape "
                                 f"{list(init.dims)} needs {numel * dtype.itemsize}: the file is damaged")
        arrays[init.name] = np.frombuffer(buf, dtype=dtype, count=numel, offset=start).reshape(init.dims)
    mapped.update(arrays)
    return model


# File signatures of the formats users most often pass by mistake, with what to do instead.
_FRAMEWORK_FILES = (
    (b"PK\x03\x04", "this is a zip archive, as torch.save writes .pt/.pth checkpoints: export the model to ONNX "
                      "first, e.g. torch.onnx.export(model, example_inputs, 'model.onnx')"),
    (b"\x80", "this is a Python pickle (an old torch.save checkpoint?): export the model to ONNX first, e.g. "
               "torch.onnx.export(model, example_inputs, 'model.onnx')"),
    (b"\x89HDF", "this is an HDF5 file (a Keras .h5 model?): convert it to ONNX first, e.g. "
                  "python -m tf2onnx.convert --keras model.h5 --output model.onnx"),
)


def framework_hint(path: Path) -> str | None:
    """What to do when ``path`` is a framework's own file (PyTorch checkpoint, Keras HDF5, TF SavedModel), else
    None."""
    if path.name == "saved_model.pb" or path.suffix in (".pbtxt",):
        return ("this is a TensorFlow SavedModel: convert it to ONNX first, e.g. python -m tf2onnx.convert "
                "--saved-model DIR --output model.onnx")
    with open(path, "rb") as f:
        head = f.read(8)
    return next((hint for magic, hint in _FRAMEWORK_FILES if head.startswith(magic)), None)


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
                if node.op_type in runtime_default_domain_ops():
                    continue  # an onnxruntime contrib op in the default domain (SimplifiedLayerNormalization)
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


@functools.cache
def runtime_default_domain_ops() -> frozenset[str]:
    """Op types that the installed onnxruntime registers in the default domain beyond ONNX's own (contrib ops the
    onnxruntime-genai builder writes there, e.g. SimplifiedLayerNormalization, RotaryEmbedding); empty when
    onnxruntime is not importable. Such models are checked by onnxruntime session creation, not by onnx.checker."""
    try:
        from onnxruntime.capi.onnxruntime_pybind11_state import get_all_operator_schema
    except ImportError:
        return frozenset()
    return frozenset(s.name for s in get_all_operator_schema() if s.domain in ("", "ai.onnx"))


def _sort_nodes(model: onnx.ModelProto, where: str) -> None:
    """Put the nodes in topological order (ONNX requires it; some tools write graphs out of order), or refuse a
    graph with a cycle. Names a node's subgraphs read from outside count as its inputs."""
    graph = model.graph
    produced = {o for n in graph.node for o in n.output if o}  # "" is an absent optional output, never read
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


def release_pages(array: np.ndarray, rows: slice | None = None) -> None:
    """Drop the resident pages of the file mapping behind ``array`` (nothing for arrays in memory): only those of
    ``array[rows]`` when ``array`` is C-contiguous, else those of the whole mapping. They are read again from the
    page cache on the next use, so a big model's weights need not all stay resident at once."""
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    if not isinstance(base, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
        return
    if not array.flags.c_contiguous or array.ndim == 0:
        base.madvise(mmap.MADV_DONTNEED)
        return
    start = array.__array_interface__["data"][0] - np.frombuffer(base, np.uint8).__array_interface__["data"][0]
    row = array[0].nbytes if len(array) else 0
    first, stop = (rows or slice(0, len(array))).indices(len(array))[:2]
    page = mmap.PAGESIZE
    lo = -(-(start + first * row) // page) * page  # whole pages inside the range only
    hi = (start + stop * row) // page * page
    if hi > lo:
        base.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


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
