"""Export gs graphs back to ONNX the way the input came (opset imports, ir_version, producer).

Big models never hold their weights twice: when a graph's constants exceed ``EXTERNAL_THRESHOLD`` bytes (or the
input came with external data), each large tensor is written, one at a time, to an external data file in a
private temporary directory, and the ``ExportedModel`` names that directory beside the small ModelProto that
refers to it. Sessions (``onnxprune.runtime``), the checker and ``save_model`` read the data from there.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxprune.ir.graph import proto_graphs
from onnxprune.ir.reading import release_pages

PROTOBUF_LIMIT = 2**31 - 1
# Bytes of constants above which export_graph writes weights to an external data file: close enough to the protobuf
# limit that models which fit in one file stay so (unless they came with external data).
EXTERNAL_THRESHOLD = PROTOBUF_LIMIT // 8 * 7
TENSOR_MIN_BYTES = 1024  # tensors this large go to the external data file, smaller ones stay in the model
# Single-file models with more bytes of constants than this are staged the same way (``ExportedModel.single_file``:
# saved as one file in the end), so checking and running them never holds their weights twice in the proto.
STAGE_THRESHOLD = 64 << 20
ALIGN = 4096  # external tensors start at page offsets, so runtimes can map them
DATA_NAME = "model.data"
_SUB_BYTE = ("int4", "uint4", "float4_e2m1fn")
_TEMP_DIRS: list[str] = []


@atexit.register
def _remove_temp_dirs() -> None:
    for directory in _TEMP_DIRS:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class ExportedModel:
    """A ModelProto, and the directory its external tensors' locations are relative to (None: all inline)."""

    proto: onnx.ModelProto
    data_dir: str | None = None
    single_file: bool = False  # the external data is only staged: save the model as one file


def export_graph(graph: gs.Graph, loaded=None, external_threshold: int | None = None) -> ExportedModel:
    """Export ``graph``, keeping the original opset imports, ir_version, producer, metadata_props (the model's and
    each node's), model_version, doc_string and domain of ``loaded``
    (a ``LoadedModel``). Graphs with more than ``external_threshold`` bytes of constants (default
    ``EXTERNAL_THRESHOLD``), and graphs of models that came with external data, get their large tensors written to a
    temporary external data file instead of copied into the proto. Other graphs with more than ``STAGE_THRESHOLD``
    bytes of constants are staged the same way but marked ``single_file`` (saving writes them as one file)."""
    threshold = EXTERNAL_THRESHOLD if external_threshold is None else external_threshold
    constants = [t for t in graph.tensors().values() if isinstance(t, gs.Constant)]
    for constant in constants:
        _pack_sub_byte(constant)
    total = constant_bytes(graph)
    if total > threshold or getattr(loaded, "external_data", False):
        exported = _export_external(graph, [t for t in constants if _nbytes(t) >= TENSOR_MIN_BYTES])
    elif total > STAGE_THRESHOLD and external_threshold is None:
        exported = _export_external(graph, [t for t in constants if _nbytes(t) >= TENSOR_MIN_BYTES])
        exported.single_file = True
    else:
        exported = ExportedModel(gs.export_onnx(graph, do_type_check=False))
    model = exported.proto
    if loaded is not None:
        del model.opset_import[:]
        for domain, version in loaded.opset_imports:
            model.opset_import.add(domain=domain, version=version)
        model.ir_version = loaded.ir_version
        model.producer_name = loaded.producer_name or model.producer_name
        model.producer_version = loaded.producer_version or model.producer_version
        model.model_version, model.doc_string, model.domain = loaded.model_version, loaded.doc_string, loaded.domain
        del model.metadata_props[:]
        for key, value in loaded.metadata_props:
            model.metadata_props.add(key=key, value=value)
        for node in model.graph.node:  # onnx-graphsurgeon drops node metadata (the exporter's name scopes)
            for key, value in loaded.node_metadata.get(node.name, ()):
                node.metadata_props.add(key=key, value=value)
        if loaded.value_info is not None:  # shapes inferred here are not written: the file stays as compact as it came
            for body in proto_graphs(model.graph):
                kept = [v for v in body.value_info if v.name in loaded.value_info]
                del body.value_info[:]
                body.value_info.extend(kept)
    return exported


def _pack_sub_byte(constant: gs.Constant) -> None:
    """In-memory 4-bit values (int4, uint4: a sliced GatherBlockQuantized table) as a TensorProto that onnx packs
    two per byte: onnx-graphsurgeon would write one byte per value, which ONNX rejects."""
    values = constant._values
    if isinstance(values, np.ndarray) and str(values.dtype) in _SUB_BYTE:
        constant._values = gs.ir.tensor.LazyValues(onnx.numpy_helper.from_array(values, constant.name))


def constant_bytes(graph: gs.Graph) -> int:
    """Bytes of every constant of ``graph``, measured without loading lazy values."""
    return sum(_nbytes(t) for t in graph.tensors().values() if isinstance(t, gs.Constant))


def _nbytes(tensor: gs.Constant) -> int:
    values = tensor._values  # not .values: that would load lazy values just to measure them
    shape = values.shape if values.shape is not None else ()
    return int(np.prod(shape)) * np.dtype(values.dtype).itemsize if values.dtype is not None else 0


def _export_external(graph: gs.Graph, constants: list[gs.Constant]) -> ExportedModel:
    """Export with ``constants`` written one by one to ``<temp dir>/model.data`` and referenced from the proto."""
    directory = tempfile.mkdtemp(prefix="onnxprune-")
    _TEMP_DIRS.append(directory)
    originals = []
    try:
        with open(os.path.join(directory, DATA_NAME), "wb") as data:
            for constant in constants:
                if not _exportable(constant):
                    continue
                values = constant._values
                array = values.load() if isinstance(values, gs.ir.tensor.LazyValues) else np.asarray(values)
                proto = _write_tensor(data, constant.name, array)
                release_pages(array)
                del array
                originals.append((constant, values, proto))
        # Swapped only once all are written: a deferred fold computed later in the loop reads its inputs' values.
        for constant, _, proto in originals:
            constant._values = gs.ir.tensor.LazyValues(proto)
        model = gs.export_onnx(graph, do_type_check=False)
    finally:
        for constant, values, _ in originals:
            constant._values = values
    return ExportedModel(model, directory)


def _exportable(constant: gs.Constant) -> bool:
    values = constant._values
    if isinstance(values, gs.ir.tensor.SparseValues) or constant.export_dtype != constant.dtype:
        return False
    return np.dtype(values.dtype).kind in "biufc"


def _write_tensor(data, name: str, array: np.ndarray) -> onnx.TensorProto:
    """Append ``array`` to the open data file at the next aligned offset; the TensorProto that refers to it."""
    offset = -data.tell() % ALIGN + data.tell()
    data.seek(offset)
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    data.write(memoryview(array.reshape(-1)).cast("B"))
    proto = onnx.TensorProto(name=name, dims=array.shape, data_type=onnx.helper.np_dtype_to_tensor_dtype(array.dtype))
    proto.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", DATA_NAME), ("offset", str(offset)), ("length", str(array.nbytes))):
        proto.external_data.add(key=key, value=value)
    return proto
