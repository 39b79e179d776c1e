"""Exceptions raised by onnxprune; every message names the node, tensor and axis involved where one is known."""


class OnnxPruneError(Exception):
    """Base class of every error onnxprune raises on purpose (the CLI turns these into one line and exit code 2)."""


class ModelLoadError(OnnxPruneError):
    """The file is missing, not an ONNX model, or its external data cannot be read."""


class ShapeError(OnnxPruneError):
    """A tensor shape needed for the analysis could not be inferred."""


class PruneError(OnnxPruneError):
    """A requested pruning is invalid: blocked group, index out of range, or an axis that would become empty."""


class ValidationError(OnnxPruneError):
    """A written model failed the ONNX checker or could not be loaded by onnxruntime."""


class ProviderError(OnnxPruneError):
    """An onnxruntime execution provider that was asked for does not work on this machine."""


class CalibrationError(OnnxPruneError):
    """Calibration data that cannot be read, or does not fit the model's inputs (names, ranks, sizes, types)."""
