"""onnxprune: structural pruning of ONNX models with a dependency graph of tensor channel axes (DepGraph)."""

from __future__ import annotations

import dataclasses
import os

import onnx

from onnxprune.analysis import AnalysisOptions, analyse
from onnxprune.axes import ChannelAxis
from onnxprune.errors import ModelLoadError, OnnxPruneError, PruneError, ShapeError, ValidationError
from onnxprune.groups import DependencyGraph, Group
from onnxprune.loading import LoadedModel, load
from onnxprune.pruning import PruneResult
from onnxprune.runtime import make_session  # noqa: F401  (quiets onnxruntime's logger for folding too)

__version__ = "0.1.0"


def analyse_model(source: str | os.PathLike | onnx.ModelProto, input_shapes: dict | None = None,
                  options: AnalysisOptions | None = None, initializer_inputs: str = "auto") -> DependencyGraph:
    """Load ``source`` and build its dependency graph with every group (the usual entry point).
    ``initializer_inputs``: 'auto' | 'protect' | 'prune', see ``onnxprune.loading.load``."""
    loaded = load(source, input_shapes=input_shapes, initializer_inputs=initializer_inputs)
    options = dataclasses.replace(options or AnalysisOptions(),
                                  protect_initializer_inputs=loaded.initializer_inputs == "protect")
    dg = analyse(loaded.graph, loaded.opset, options)
    dg.loaded = loaded
    return dg


__all__ = ["AnalysisOptions", "ChannelAxis", "DependencyGraph", "Group", "LoadedModel", "ModelLoadError",
           "OnnxPruneError", "PruneError", "PruneResult", "ShapeError", "ValidationError", "analyse",
           "analyse_model", "load"]
