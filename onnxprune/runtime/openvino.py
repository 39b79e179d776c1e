"""OpenVINO's CPU plugin as a second runtime. ``OpenVinoSession`` reads the ONNX model directly (OpenVINO's ONNX
frontend) and answers the part of onnxruntime's InferenceSession that onnxprune uses — ``run(None, feeds)``,
``get_inputs()``, ``get_outputs()`` (names, shapes, onnxruntime-style type strings), ``get_providers()`` — so
validation and the benchmark run through it unchanged. ``sessions.make_session(..., runtime="openvino")`` makes it.

Two choices keep it honest: the inference precision is pinned to f32 (on CPUs with bf16 or AMX the plugin's
default is bf16, which an output comparison must not see and which would time a different computation), and the
dims OpenVINO leaves dynamic (its partial shapes) keep the ONNX file's dim names, so a batch dim and a sequence dim
are told apart as they are for onnxruntime. OpenVINO always applies its own graph transformations; there is no
switch for onnxruntime's ``fuse=False``.

openvino is optional (``pip install openvino``): it is imported when a session is made, and its absence is a
ProviderError saying how to install it.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass

import numpy as np
import onnx

from onnxprune.errors import ProviderError
from onnxprune.ir.export import PROTOBUF_LIMIT, ExportedModel

OPENVINO_DEVICE = "OpenVINO CPU"  # what get_providers() and reports say ran the model

_TYPES = {"f32": "tensor(float)", "f16": "tensor(float16)", "f64": "tensor(double)", "i64": "tensor(int64)",
          "i32": "tensor(int32)", "i8": "tensor(int8)", "u8": "tensor(uint8)", "boolean": "tensor(bool)"}


@functools.cache
def openvino_module():
    """The ``openvino`` package; ProviderError (with the install command) when it is not installed."""
    try:
        return importlib.import_module("openvino")
    except ImportError:
        raise ProviderError("--runtime openvino needs the openvino package, which is not installed here: "
                            "pip install openvino (or use --runtime onnxruntime)") from None


def openvino_version() -> str | None:
    """The installed OpenVINO version, or None when it is not installed."""
    try:
        return openvino_module().__version__
    except ProviderError:
        return None


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output as onnxruntime's NodeArg shows it: name, shape (ints; dim names or None for
    dynamic dims), type ('tensor(float)', ...)."""

    name: str
    shape: list
    type: str


class OpenVinoSession:
    """A model compiled for OpenVINO's CPU plugin, used like an onnxruntime InferenceSession.

    ``threads`` > 0 sets INFERENCE_NUM_THREADS (0: OpenVINO's default); the LATENCY performance hint is set, which
    is what a single-request benchmark measures."""

    def __init__(self, model: str | os.PathLike | onnx.ModelProto | ExportedModel, threads: int = 0):
        ov = openvino_module()
        core = ov.Core()
        source, header = _readable(model)
        ov_model = core.read_model(source)
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self._compiled = core.compile_model(ov_model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        declared = {v.name: [d.dim_param or None for d in v.type.tensor_type.shape.dim]
                    for v in [*header.graph.input, *header.graph.output]}
        self._inputs = [_info(port, header.graph.input, declared) for port in ov_model.inputs]
        self._outputs = [_info(port, header.graph.output, declared) for port in ov_model.outputs]

    def get_inputs(self) -> list[TensorInfo]:
        """The graph inputs: name, shape from OpenVINO's partial shape (dynamic dims keep the ONNX dim name)."""
        return list(self._inputs)

    def get_outputs(self) -> list[TensorInfo]:
        """The graph outputs, in the model's order."""
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        """['OpenVINO CPU']: what ran the model, in the place onnxruntime lists its providers."""
        return [OPENVINO_DEVICE]

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run once on ``feeds``; the outputs (all, or those named) as numpy arrays, in order."""
        result = self._request.infer(feeds)  # copies the outputs (share_outputs=False)
        arrays = list(result.values())
        if output_names is None:
            return arrays
        index = {info.name: k for k, info in enumerate(self._outputs)}
        return [arrays[index[name]] for name in output_names]


def _readable(model) -> tuple[object, onnx.ModelProto]:
    """(what ``Core.read_model`` reads: a path or the serialized model, a proto whose graph inputs/outputs give the
    ONNX names and dim names)."""
    if isinstance(model, ExportedModel):
        if model.data_dir is None:
            model = model.proto
        else:  # external data lies beside export's private copy, named relative to that folder
            path = os.path.join(model.data_dir, "model.onnx")
            if not os.path.exists(path):
                onnx.save_model(model.proto, path)
            model = path
    if isinstance(model, onnx.ModelProto):
        if model.ByteSize() < PROTOBUF_LIMIT:
            return model.SerializeToString(), model
        raise ProviderError("a model over 2 GB can only be given to OpenVINO as a file with external data")
    path = os.fspath(model)
    return path, onnx.load(path, load_external_data=False)


def _info(port, values, declared: dict[str, list]) -> TensorInfo:
    """The TensorInfo of an OpenVINO port: its ONNX name (one of the graph's ``values``), its partial shape with
    dynamic dims named as ``declared`` in the file, its type."""
    names = port.get_names()
    name = next((v.name for v in values if v.name in names), port.get_any_name())
    given = declared.get(name, [])
    partial = port.get_partial_shape()
    if partial.rank.is_dynamic:  # rank unknown to OpenVINO: the ONNX declaration is all there is
        return TensorInfo(name, list(given), _type(port))
    shape = []
    for axis, dim in enumerate(partial):
        if dim.is_static:
            shape.append(dim.get_length())
        else:
            shape.append(given[axis] if axis < len(given) else None)
    return TensorInfo(name, shape, _type(port))


def _type(port) -> str:
    kind = port.get_element_type().get_type_name()
    return _TYPES.get(kind, f"tensor({kind})")
