"""Running models: onnxruntime sessions (``sessions``) and made-up inputs (``inputs``)."""

from onnxprune.runtime.inputs import example_inputs, random_inputs
from onnxprune.runtime.sessions import ModelSource, available_provider, cuda_works, make_session, run

__all__ = ["ModelSource", "available_provider", "cuda_works", "example_inputs", "make_session", "random_inputs", "run"]
