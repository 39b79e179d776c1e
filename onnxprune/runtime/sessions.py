"""Sessions: the one session factory, with the provider resolved (a provider that does not work here is a clear
error, never a silent fallback) and big models' external data found where export put it.

Two runtimes: onnxruntime (providers cpu, cuda, tensorrt) and OpenVINO's CPU plugin (``runtime="openvino"``, see
``runtime.openvino``), which has no providers: only ``provider="auto"`` goes with it."""

from __future__ import annotations

import functools
import os

import numpy as np
import onnx
import onnxruntime as ort

from onnxprune.errors import ProviderError
from onnxprune.ir.export import ExportedModel
from onnxprune.runtime.openvino import OpenVinoSession, openvino_module

RUNTIMES = ("onnxruntime", "openvino")
ModelSource = str | os.PathLike | onnx.ModelProto | ExportedModel

ort.set_default_logger_severity(4)  # failures raise exceptions with the message: no extra lines on stderr


@functools.cache
def cuda_works() -> bool:
    """Whether a CUDAExecutionProvider session really starts (onnxruntime-gpu lists it even without a GPU)."""
    return _starts("CUDAExecutionProvider")


@functools.cache
def tensorrt_works() -> bool:
    """Whether a TensorrtExecutionProvider session really starts (it needs a GPU and TensorRT's libraries)."""
    return cuda_works() and _starts("TensorrtExecutionProvider")


def _starts(provider: str) -> bool:
    """Whether a one-Relu session on ``provider`` starts with that provider first."""
    if provider not in ort.get_available_providers():
        return False
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    probe = onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "p", [x], [y]),
                                   opset_imports=[onnx.helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=[provider])
    except Exception:
        return False
    return session.get_providers()[0] == provider


def available_provider(provider: str = "auto") -> str:
    """'CUDAExecutionProvider' when asked for cuda/auto and it works here, 'TensorrtExecutionProvider' when asked
    for tensorrt and it works, else 'CPUExecutionProvider'; ProviderError when the one asked for does not work."""
    if provider in ("auto", "cuda") and cuda_works():
        return "CUDAExecutionProvider"
    if provider == "cuda":
        raise ProviderError("--provider cuda: CUDAExecutionProvider does not work here (no GPU, or the CUDA "
                            "libraries onnxruntime-gpu needs are missing); use --provider cpu or auto")
    if provider == "tensorrt":
        if tensorrt_works():
            return "TensorrtExecutionProvider"
        raise ProviderError("--provider tensorrt: TensorrtExecutionProvider does not work here (no GPU, or "
                            "TensorRT's libraries are missing: pip install tensorrt); use --provider cuda or cpu")
    if provider not in ("auto", "cpu"):
        raise ProviderError(f"unknown provider {provider!r}; choose auto, cuda, tensorrt or cpu")
    return "CPUExecutionProvider"


def provider_list(resolved: str) -> list[str]:
    """The providers a session on ``resolved`` gets: TensorRT keeps CUDA behind it for the nodes TensorRT does
    not take (the session's get_providers() says so); the others run alone."""
    return [resolved, "CUDAExecutionProvider"] if resolved == "TensorrtExecutionProvider" else [resolved]


def check_runtime(runtime: str, provider: str = "auto") -> None:
    """ProviderError unless ``runtime`` is one of RUNTIMES, is installed here, and, for OpenVINO, comes with
    ``provider`` 'auto' (providers are onnxruntime's; OpenVINO runs on its own CPU plugin)."""
    if runtime not in RUNTIMES:
        raise ProviderError(f"unknown runtime {runtime!r}; choose {' or '.join(RUNTIMES)}")
    if runtime == "openvino":
        if provider != "auto":
            raise ProviderError(f"--provider {provider} is an onnxruntime execution provider and does not apply to "
                                "--runtime openvino (it runs on OpenVINO's CPU plugin): drop --provider")
        openvino_module()


def make_session(model: ModelSource, provider: str = "auto", threads: int = 0, fuse: bool = True,
                 runtime: str = "onnxruntime", prepack: bool = True) -> ort.InferenceSession | OpenVinoSession:
    """An InferenceSession on ``model`` (proto or path) with logging quiet. ``fuse=False`` keeps onnxruntime to
    its basic, exact graph rewrites: its fusions may compute differently (QDQ pairs fused into integer kernels
    round differently), which a comparison of two models must not see. ``runtime="openvino"``: an
    OpenVinoSession instead (f32 on the CPU plugin; ``provider`` must be 'auto', ``fuse`` does not apply).
    ``prepack=False``: onnxruntime keeps no pre-packed copy of each MatMul/Gemm weight (a second copy of the
    model's weights in memory); sessions that run a few batches (checks, validation) need none."""
    check_runtime(runtime, provider)
    if runtime == "openvino":
        return OpenVinoSession(model, threads)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    if not fuse:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if threads:
        options.intra_op_num_threads = threads
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    if isinstance(model, ExportedModel):
        if model.data_dir is not None:  # big models keep their weights in export's private folder
            options.add_session_config_entry("session.model_external_initializers_file_folder_path", model.data_dir)
        model = model.proto
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else os.fspath(model)
    return ort.InferenceSession(data, options, providers=provider_list(available_provider(provider)))


def run(model: ModelSource, feeds: dict[str, np.ndarray], provider: str = "cpu") -> list[np.ndarray]:
    """Outputs of ``model`` on ``feeds``."""
    return make_session(model, provider).run(None, feeds)
