"""Running models: sessions on onnxruntime or OpenVINO (``sessions``, ``openvino``) and made-up inputs
(``inputs``)."""

from onnxprune.runtime.inputs import example_inputs, random_inputs
from onnxprune.runtime.openvino import OPENVINO_DEVICE, OpenVinoSession, openvino_version
from onnxprune.runtime.sessions import (
    RUNTIMES,
    ModelSource,
    available_provider,
    check_runtime,
    cuda_works,
    make_session,
    provider_list,
    run,
    tensorrt_works,
)

__all__ = ["OPENVINO_DEVICE", "RUNTIMES", "ModelSource", "OpenVinoSession", "available_provider", "check_runtime",
           "cuda_works", "example_inputs", "make_session", "openvino_version", "provider_list", "random_inputs",
           "run", "tensorrt_works"]
