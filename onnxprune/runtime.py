"""onnxruntime helpers: sessions with the right provider, random inputs from graph input shapes, output diffs."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort

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
        raise RuntimeError("CUDAExecutionProvider does not work here (no GPU, or CUDA libraries missing)")
    return "CPUExecutionProvider"


def make_session(model: onnx.ModelProto | str, provider: str = "auto", threads: int = 0,
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
    if isinstance(model, onnx.ModelProto):
        from onnxprune.saving import external_data_dir

        folder = external_data_dir(model)  # big models exported by to_proto keep their weights in this folder
        if folder is not None:
            options.add_session_config_entry("session.model_external_initializers_file_folder_path", folder)
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, options, providers=[available_provider(provider)])


def random_inputs(session: ort.InferenceSession, batch: int = 2, seed: int = 0,
                  dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Random feeds for every input: normal floats, small non-negative ints; symbolic dims become ``batch``
    (or the value ``dims`` gives for that dim name)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) else (dims or {}).get(d, batch) for d in inp.shape]
        kind = inp.type
        if "float" in kind:
            dtype = np.float16 if "float16" in kind else (np.float64 if "double" in kind else np.float32)
            feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
        elif "int" in kind:
            dtype = np.int32 if "int32" in kind else np.int64
            feeds[inp.name] = rng.integers(0, 16, size=shape).astype(dtype)
        elif "bool" in kind:
            feeds[inp.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise ValueError(f"cannot make random data for input '{inp.name}' of type {kind}")
    return feeds


def run(model: onnx.ModelProto | str, feeds: dict[str, np.ndarray], provider: str = "cpu") -> list[np.ndarray]:
    """Outputs of ``model`` on ``feeds``."""
    return make_session(model, provider).run(None, feeds)
