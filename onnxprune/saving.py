"""Export gs graphs to ModelProto the way the input came, check them, and write files atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs

from onnxprune.errors import OnnxPruneError, ValidationError

_PROTOBUF_LIMIT = 2**31 - 1


def to_proto(graph: gs.Graph, loaded=None) -> onnx.ModelProto:
    """Export ``graph``, keeping the original opset imports, ir_version and producer fields."""
    model = gs.export_onnx(graph, do_type_check=False)
    if loaded is not None:
        del model.opset_import[:]
        for domain, version in loaded.opset_imports:
            model.opset_import.add(domain=domain, version=version)
        model.ir_version = loaded.ir_version
        model.producer_name = loaded.producer_name or model.producer_name
        model.producer_version = loaded.producer_version or model.producer_version
    return model


def checker_error(model: onnx.ModelProto) -> str | None:
    """The message of onnx.checker with full_check (strict shape inference), or None when the model passes."""
    try:
        if model.ByteSize() < _PROTOBUF_LIMIT:
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
        raise ValidationError(f"onnxruntime cannot load the pruned model: {exc}") from None


def save_model(model: onnx.ModelProto, path: str | os.PathLike, source: str | os.PathLike | None = None) -> None:
    """Write ``model`` to ``path`` atomically; never writes over ``source`` (the input file)."""
    path = Path(path)
    if source is not None and path.resolve() == Path(source).resolve():
        raise OnnxPruneError(f"output {path} is the input file; choose another path")
    if not path.parent.is_dir():
        raise OnnxPruneError(f"output directory {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        onnx.save_model(model, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
