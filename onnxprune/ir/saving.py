"""Write models to disk atomically (a temporary file or directory beside the target, checked, then renamed), with
external data beside the model when it is big or came that way; never over the input file or its data files."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx.external_data_helper import uses_external_data

from onnxprune.errors import OnnxPruneError
from onnxprune.ir.contrib import has_contrib_ops
from onnxprune.ir.export import ALIGN, DATA_NAME, PROTOBUF_LIMIT, TENSOR_MIN_BYTES, ExportedModel, _write_tensor
from onnxprune.ir.reading import is_repeated_field, source_files


def _user_mode(path: str | os.PathLike) -> None:
    """Give a file written through tempfile (mode 0600) the mode a plain open() would have given it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def save_model(model: onnx.ModelProto | ExportedModel, path: str | os.PathLike,
               source: str | os.PathLike | None = None, external_data: bool | None = None) -> None:
    """Write ``model`` to ``path`` atomically; never writes over ``source`` (the input file) or its data files.

    ``external_data``: write large tensors to ``<name>.data`` beside the model. By default it is done for models
    exported with external data, models over the protobuf limit, and when ``source`` came with external data.
    Files get the permissions any file the user writes gets (mode 0666 less the umask)."""
    exported = model if isinstance(model, ExportedModel) else ExportedModel(model)
    model = exported.proto
    path = Path(path)
    data_path = path.with_name(f"{path.name}.data")
    if source is not None:
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
        external_data = ((exported.data_dir is not None and not exported.single_file)
                         or model.ByteSize() >= PROTOBUF_LIMIT or (source is not None and len(protected) > 1))
    if not external_data and exported.data_dir is not None:  # staged by export: gather the tensors into one file
        model = onnx.ModelProto()
        model.CopyFrom(exported.proto)
        onnx.load_external_data_for_model(model, exported.data_dir)
    if not external_data:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            onnx.save_model(model, tmp)
            _user_mode(tmp)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return
    staging = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        staged = Path(staging) / path.name
        _save_external(exported, staged, data_path.name)
        if not has_contrib_ops(exported.proto):  # onnx.checker refuses onnxruntime's default-domain contrib ops
            onnx.checker.check_model(str(staged))
        _user_mode(staged)
        _user_mode(staged.with_name(data_path.name))
        os.replace(staged.with_name(data_path.name), data_path)
        os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _save_external(exported: ExportedModel, path: Path, data_name: str) -> None:
    """Write ``model`` to ``path`` with every tensor of at least TENSOR_MIN_BYTES in ``data_name`` beside it,
    copying tensors one at a time (from memory, or from the data file of a model exported with external data)."""
    model, source_dir = exported.proto, exported.data_dir
    skeleton = onnx.ModelProto()
    for descriptor, value in model.ListFields():
        if descriptor.name == "graph":
            continue
        if descriptor.message_type is not None and not is_repeated_field(descriptor):
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
            elif _tensor_bytes(tensor) >= TENSOR_MIN_BYTES:
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
    offset = -data.tell() % ALIGN + data.tell()
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
    for key, value in (("location", DATA_NAME), ("offset", str(offset)), ("length", str(length))):
        proto.external_data.add(key=key, value=value)
    return proto
