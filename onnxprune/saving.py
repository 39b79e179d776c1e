"""Export gs graphs to ModelProto the way the input came, check them, and write files atomically.

Big models never hold their weights twice: when a graph's constants exceed ``EXTERNAL_THRESHOLD`` bytes,
``to_proto`` writes each large tensor, one at a time, to an external data file in a private temporary directory and
returns a small ModelProto that refers to it (and is marked with that directory). ``check_model``, onnxruntime
sessions (``onnxprune.runtime``) and ``save_model`` read the data from there. ``save_model`` writes external data
(``<name>.data`` beside the model) for such models, for models over the protobuf limit, and when the input came
with external data; the model and its data are written to a temporary directory in the target directory, checked,
then renamed into place, so a failure leaves nothing behind.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx.external_data_helper import uses_external_data

from onnxprune.errors import OnnxPruneError, ValidationError
from onnxprune.loading import is_repeated_field, release_pages

_PROTOBUF_LIMIT = 2**31 - 1
# Bytes of constants above which to_proto writes weights to an external data file: close enough to the protobuf
# limit that models which fit in one file stay so (unless they came with external data).
EXTERNAL_THRESHOLD = _PROTOBUF_LIMIT // 8 * 7
_TENSOR_MIN_BYTES = 1024  # tensors this large go to the external data file, smaller ones stay in the model
_ALIGN = 4096  # external tensors start at page offsets, so runtimes can map them
_DATA_DIR_KEY = "onnxprune.external_data_dir"
_DATA_NAME = "model.data"
_TEMP_DIRS: list[str] = []


@atexit.register
def _remove_temp_dirs() -> None:
    for directory in _TEMP_DIRS:
        shutil.rmtree(directory, ignore_errors=True)


def to_proto(graph: gs.Graph, loaded=None, external_threshold: int | None = None) -> onnx.ModelProto:
    """Export ``graph``, keeping the original opset imports, ir_version and producer fields.

    Graphs with more than ``external_threshold`` bytes of constants (default ``EXTERNAL_THRESHOLD``), and graphs
    of models that came with external data, get their large tensors written to a temporary external data file
    instead of copied into the proto."""
    threshold = EXTERNAL_THRESHOLD if external_threshold is None else external_threshold
    constants = [t for t in graph.tensors().values() if isinstance(t, gs.Constant)]
    if sum(_nbytes(t) for t in constants) > threshold or getattr(loaded, "external_data", False):
        model = _export_external(graph, [t for t in constants if _nbytes(t) >= _TENSOR_MIN_BYTES])
    else:
        model = gs.export_onnx(graph, do_type_check=False)
    if loaded is not None:
        del model.opset_import[:]
        for domain, version in loaded.opset_imports:
            model.opset_import.add(domain=domain, version=version)
        model.ir_version = loaded.ir_version
        model.producer_name = loaded.producer_name or model.producer_name
        model.producer_version = loaded.producer_version or model.producer_version
    return model


def _nbytes(tensor: gs.Constant) -> int:
    values = tensor._values  # not .values: that would load lazy values just to measure them
    shape = values.shape if values.shape is not None else ()
    return int(np.prod(shape)) * np.dtype(values.dtype).itemsize if values.dtype is not None else 0


def _export_external(graph: gs.Graph, constants: list[gs.Constant]) -> onnx.ModelProto:
    """Export with ``constants`` written one by one to ``<temp dir>/model.data`` and referenced from the proto."""
    directory = tempfile.mkdtemp(prefix="onnxprune-")
    _TEMP_DIRS.append(directory)
    originals = []
    try:
        with open(os.path.join(directory, _DATA_NAME), "wb") as data:
            for constant in constants:
                if not _exportable(constant):
                    continue
                values = constant._values
                array = values.load() if isinstance(values, gs.ir.tensor.LazyValues) else np.asarray(values)
                proto = _write_tensor(data, constant.name, array)
                release_pages(array)
                del array
                originals.append((constant, values))
                constant._values = gs.ir.tensor.LazyValues(proto)
        model = gs.export_onnx(graph, do_type_check=False)
    finally:
        for constant, values in originals:
            constant._values = values
    model.metadata_props.add(key=_DATA_DIR_KEY, value=directory)
    return model


def _exportable(constant: gs.Constant) -> bool:
    values = constant._values
    if isinstance(values, gs.ir.tensor.SparseValues) or constant.export_dtype != constant.dtype:
        return False
    return np.dtype(values.dtype).kind in "biufc"


def _write_tensor(data, name: str, array: np.ndarray) -> onnx.TensorProto:
    """Append ``array`` to the open data file at the next aligned offset; the TensorProto that refers to it."""
    offset = -data.tell() % _ALIGN + data.tell()
    data.seek(offset)
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    data.write(memoryview(array.reshape(-1)).cast("B"))
    proto = onnx.TensorProto(name=name, dims=array.shape, data_type=onnx.helper.np_dtype_to_tensor_dtype(array.dtype))
    proto.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", _DATA_NAME), ("offset", str(offset)), ("length", str(array.nbytes))):
        proto.external_data.add(key=key, value=value)
    return proto


def external_data_dir(model: onnx.ModelProto) -> str | None:
    """The directory holding the external data of a model ``to_proto`` exported with external data, else None."""
    for entry in model.metadata_props:
        if entry.key == _DATA_DIR_KEY:
            return entry.value
    return None


def checker_error(model: onnx.ModelProto) -> str | None:
    """The message of onnx.checker with full_check (strict shape inference), or None when the model passes."""
    try:
        directory = external_data_dir(model)
        if directory is not None:
            path = os.path.join(directory, "model.onnx")
            onnx.save_model(model, path)
            onnx.checker.check_model(path, full_check=True)
        elif model.ByteSize() < _PROTOBUF_LIMIT:
            onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        return str(exc)
    return None


def check_model(model: onnx.ModelProto, original=None) -> None:
    """onnx.checker with full_check and an onnxruntime session; ValidationError if either fails.

    ``original`` (a callable giving the unpruned ModelProto) excuses a checker error the original has as well
    (e.g. ops the checker calls deprecated): pruning did not cause it; onnxruntime must still load the model.
    """
    error = checker_error(model)
    if error is not None and (original is None or checker_error(original()) != error):
        raise ValidationError(f"the pruned model fails onnx.checker: {error}")
    from onnxprune.runtime import make_session

    try:
        make_session(model, provider="cpu")
    except Exception as exc:
        if original is not None and not _loads(original()):
            raise ValidationError(f"onnxruntime cannot load this model, before pruning either: {exc}") from None
        raise ValidationError(f"onnxruntime cannot load the pruned model: {exc}") from None


def _loads(model: onnx.ModelProto) -> bool:
    from onnxprune.runtime import make_session

    try:
        make_session(model, provider="cpu")
    except Exception:
        return False
    return True


def save_model(model: onnx.ModelProto, path: str | os.PathLike, source: str | os.PathLike | None = None,
               external_data: bool | None = None) -> None:
    """Write ``model`` to ``path`` atomically; never writes over ``source`` (the input file) or its data files.

    ``external_data``: write large tensors to ``<name>.data`` beside the model. By default it is done for models
    exported with external data, models over the protobuf limit, and when ``source`` came with external data."""
    path = Path(path)
    data_path = path.with_name(f"{path.name}.data")
    if source is not None:
        from onnxprune.loading import source_files

        protected = source_files(source)
        for target in (path, data_path):
            if str(target.resolve()) in protected:
                what = "the input file" if target.resolve() == Path(source).resolve() else "a file the input reads"
                raise OnnxPruneError(f"output {target} is {what}; choose another path")
    if not path.parent.is_dir():
        raise OnnxPruneError(f"output directory {path.parent} does not exist")
    if path.is_dir():
        raise OnnxPruneError(f"output {path} is a directory")
    if external_data is None:
        external_data = (external_data_dir(model) is not None or model.ByteSize() >= _PROTOBUF_LIMIT
                         or (source is not None and len(protected) > 1))
    if not external_data:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            onnx.save_model(model, tmp)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return
    staging = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        staged = Path(staging) / path.name
        _save_external(model, staged, data_path.name)
        onnx.checker.check_model(str(staged))
        os.replace(staged.with_name(data_path.name), data_path)
        os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _save_external(model: onnx.ModelProto, path: Path, data_name: str) -> None:
    """Write ``model`` to ``path`` with every tensor of at least _TENSOR_MIN_BYTES in ``data_name`` beside it,
    copying tensors one at a time (from memory, or from the data file of a model exported with external data)."""
    source_dir = external_data_dir(model)
    skeleton = onnx.ModelProto()
    for descriptor, value in model.ListFields():
        if descriptor.name == "graph":
            continue
        if descriptor.name == "metadata_props":
            skeleton.metadata_props.extend(e for e in value if e.key != _DATA_DIR_KEY)
        elif descriptor.message_type is not None and not is_repeated_field(descriptor):
            getattr(skeleton, descriptor.name).CopyFrom(value)
        elif is_repeated_field(descriptor):
            getattr(skeleton, descriptor.name).extend(value)
        else:
            setattr(skeleton, descriptor.name, value)
    for descriptor, value in model.graph.ListFields():
        if descriptor.name == "initializer":
            continue
        if is_repeated_field(descriptor):
            getattr(skeleton.graph, descriptor.name).extend(value)
        else:
            setattr(skeleton.graph, descriptor.name, value)
    with open(path.with_name(data_name), "wb") as data:
        for tensor in model.graph.initializer:
            if uses_external_data(tensor):
                info = onnx.external_data_helper.ExternalDataInfo(tensor)
                proto = _copy_external(data, tensor, os.path.join(source_dir or "", info.location), info)
            elif _tensor_bytes(tensor) >= _TENSOR_MIN_BYTES:
                proto = _write_tensor(data, tensor.name, onnx.numpy_helper.to_array(tensor))
            else:
                skeleton.graph.initializer.append(tensor)
                continue
            for entry in proto.external_data:
                if entry.key == "location":
                    entry.value = data_name
            skeleton.graph.initializer.append(proto)
    onnx.save_model(skeleton, str(path))


def _tensor_bytes(tensor: onnx.TensorProto) -> int:
    if tensor.HasField("raw_data"):
        return len(tensor.raw_data)
    numel = int(np.prod(tensor.dims)) if tensor.dims else 1
    try:
        return numel * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except Exception:
        return 0


def _copy_external(data, tensor: onnx.TensorProto, file: str, info) -> onnx.TensorProto:
    """Copy an external tensor's bytes from ``file`` to the data file in chunks; the TensorProto referring to it."""
    offset = -data.tell() % _ALIGN + data.tell()
    data.seek(offset)
    length = info.length if info.length is not None else _tensor_bytes(tensor)
    with open(file, "rb") as src:
        src.seek(info.offset or 0)
        left = length
        while left:
            chunk = src.read(min(left, 1 << 24))
            if not chunk:
                raise OnnxPruneError(f"external data of tensor '{tensor.name}' ends early in {file}")
            data.write(chunk)
            left -= len(chunk)
    proto = onnx.TensorProto(name=tensor.name, dims=tensor.dims, data_type=tensor.data_type)
    proto.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", _DATA_NAME), ("offset", str(offset)), ("length", str(length))):
        proto.external_data.add(key=key, value=value)
    return proto
