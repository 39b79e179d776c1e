"""onnxruntime sessions: the one session factory, with the provider resolved (a provider that does not work here is
a clear error, never a silent fallback) and big models' external data found where export put it."""

from __future__ import annotations

import functools
import os

import numpy as np
import onnx
import onnxruntime as ort

from onnxprune.errors import ProviderError
from onnxprune.ir.export import ExportedModel

ModelSource = str | os.PathLike | onnx.ModelProto | ExportedModel

ort.set_default_logger_severity(4)  # failures raise exceptions with the message: no extra lines on stderr


@functools.cache
def cuda_works() -> bool:
    """Whether a CUDAExecutionProvider session really starts (onnxruntime-gpu lists it even without a GPU)."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    probe = onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "p", [x], [y]),
                                   opset_imports=[onnx.helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CUDAExecutionProvider"])
    except Exception:
        return False
    return session.get_providers()[0] == "CUDAExecutionProvider"


def available_provider(provider: str = "auto") -> str:
    """'CUDAExecutionProvider' when asked for cuda/auto and it works here, else 'CPUExecutionProvider'."""
    if provider in ("auto", "cuda") and cuda_works():
        return "CUDAExecutionProvider"
    if provider == "cuda":
        raise ProviderError("--provider cuda: CUDAExecutionProvider does not work here (no GPU, or the CUDA "
                            "libraries onnxruntime-gpu needs are missing); use --provider cpu or auto")
    if provider not in ("auto", "cpu"):
        raise ProviderError(f"unknown provider {provider!r}; choose auto, cuda or cpu")
    return "CPUExecutionProvider"


def make_session(model: ModelSource, provider: str = "auto", threads: int = 0,
                 fuse: bool = True) -> ort.InferenceSession:
    """An InferenceSession on ``model`` (proto or path) with logging quiet. ``fuse=False`` keeps onnxruntime to
    its basic, exact graph rewrites: its fusions may compute differently (QDQ pairs fused into integer kernels
    round differently), which a comparison of two models must not see."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    if not fuse:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if threads:
        options.intra_op_num_threads = threads
    if isinstance(model, ExportedModel):
        if model.data_dir is not None:  # big models keep their weights in export's private folder
            options.add_session_config_entry("session.model_external_initializers_file_folder_path", model.data_dir)
        model = model.proto
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else os.fspath(model)
    return ort.InferenceSession(data, options, providers=[available_provider(provider)])


def run(model: ModelSource, feeds: dict[str, np.ndarray], provider: str = "cpu") -> list[np.ndarray]:
    """Outputs of ``model`` on ``feeds``."""
    return make_session(model, provider).run(None, feeds)
