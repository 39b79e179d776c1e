"""Analysis: run every node's handler over the loaded graph and group coupled (axis, index) pairs.

Importing this package imports ``onnxprune.op_handlers``, which registers every handler family.
"""

from __future__ import annotations

import dataclasses
import os

import onnx

import onnxprune.op_handlers  # noqa: F401  (registers every handler family)
from onnxprune.analysis.build import analyse
from onnxprune.analysis.groups import DependencyGraph, Group
from onnxprune.handlers.record import AnalysisOptions
from onnxprune.ir.loading import load
from onnxprune.ir.untie import untie_constants


def analyse_model(source: str | os.PathLike | onnx.ModelProto, input_shapes: dict | None = None,
                  options: AnalysisOptions | None = None, initializer_inputs: str = "auto") -> DependencyGraph:
    """Load ``source``, untie constants shared only by identical values (``onnxprune.ir.untie``; the decisions are
    ``dg.ties``) and build its dependency graph with every group (the usual entry point).
    ``initializer_inputs``: 'auto' | 'protect' | 'prune', see ``onnxprune.ir.loading.load``."""
    loaded = load(source, input_shapes=input_shapes, initializer_inputs=initializer_inputs)
    options = dataclasses.replace(options or AnalysisOptions(),
                                  protect_initializer_inputs=loaded.initializer_inputs == "protect")
    ties = untie_constants(loaded.graph, loaded.node_metadata)  # before groups form: incidental sharing must not merge
    dg = analyse(loaded.graph, loaded.opset, options)
    dg.loaded = loaded
    dg.ties = ties
    return dg


__all__ = ["AnalysisOptions", "DependencyGraph", "Group", "analyse", "analyse_model"]
