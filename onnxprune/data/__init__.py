"""Calibration data: the model inputs users give (files, feed dicts, onnxruntime readers), checked, split into a
fitting and a held-out part, and batched the way the model accepts them."""

from onnxprune.data.batching import Calibration, InputSpec, model_inputs, prepare_calibration
from onnxprune.data.calibration import calibration_batches, load_calibration, require_inputs
from onnxprune.data.sources import Feeds, read_pieces

__all__ = ["Calibration", "Feeds", "InputSpec", "calibration_batches", "load_calibration", "model_inputs",
           "prepare_calibration", "read_pieces", "require_inputs"]
