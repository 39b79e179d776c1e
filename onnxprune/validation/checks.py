"""The checks every model we write gets: onnx.checker with full_check, and an onnxruntime session that loads."""

from __future__ import annotations

import os
from collections.abc import Callable

import onnx

from onnxprune.errors import ValidationError
from onnxprune.ir.export import PROTOBUF_LIMIT, ExportedModel
from onnxprune.runtime.sessions import ModelSource, make_session


def checker_error(model: ModelSource) -> str | None:
    """The message of onnx.checker with full_check (strict shape inference), or None when the model passes.
    Files and models with external data are checked by path, so models over 2 GB work."""
    try:
        if isinstance(model, (str, os.PathLike)):
            onnx.checker.check_model(os.fspath(model), full_check=True)
        elif isinstance(model, ExportedModel) and model.data_dir is not None:
            path = os.path.join(model.data_dir, "model.onnx")
            onnx.save_model(model.proto, path)
            onnx.checker.check_model(path, full_check=True)
        else:
            proto = model.proto if isinstance(model, ExportedModel) else model
            if proto.ByteSize() < PROTOBUF_LIMIT:
                onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        return str(exc)
    return None


def check_model(model: ModelSource, original: Callable[[], ModelSource] | None = None) -> None:
    """onnx.checker with full_check and an onnxruntime session; ValidationError if either fails.

    ``original`` (a callable giving the unpruned model) excuses a checker error the original has as well (e.g. ops
    the checker calls deprecated): pruning did not cause it; onnxruntime must still load the model.
    """
    error = checker_error(model)
    if error is not None and (original is None or checker_error(original()) != error):
        where = f"{os.fspath(model)} fails" if isinstance(model, (str, os.PathLike)) else "the pruned model fails"
        raise ValidationError(f"{where} onnx.checker: {error}")
    try:
        make_session(model, provider="cpu", prepack=False)
    except Exception as exc:
        if original is not None and not _loads(original()):
            raise ValidationError(f"onnxruntime cannot load this model, before pruning either: {exc}") from None
        raise ValidationError(f"onnxruntime cannot load the pruned model: {exc}") from None


def _loads(model: ModelSource) -> bool:
    try:
        make_session(model, provider="cpu", prepack=False)
    except Exception:
        return False
    return True
