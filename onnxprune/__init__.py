"""onnxprune: structural pruning of ONNX models with a dependency graph of tensor channel axes (DepGraph).

The pipeline, one sub-package per stage (see docs/architecture.md): ``ir`` (read, shapes, fold, export, save) ->
``handlers`` (the op-handler protocol) -> ``op_handlers`` (one module per op family) -> ``analysis`` (dependency
graph, groups) -> ``scoring`` (importance) -> ``selection`` (which units go; the Plan) -> ``apply`` (rewrite) ->
``validation`` (checker, sessions, oracle, comparison, bench) -> ``search`` (targets) -> ``pipeline`` / ``cli``.
"""

from __future__ import annotations

from onnxprune.analysis import AnalysisOptions, DependencyGraph, Group, analyse, analyse_model
from onnxprune.apply import PruneResult, apply_plan, prune_group
from onnxprune.axes import ChannelAxis
from onnxprune.errors import ModelLoadError, OnnxPruneError, PruneError, ShapeError, ValidationError
from onnxprune.ir.loading import LoadedModel, load
from onnxprune.pipeline import Pruned, PruneOptions, prune
from onnxprune.validation.oracle import masked_model

__version__ = "0.1.0"

__all__ = ["AnalysisOptions", "ChannelAxis", "DependencyGraph", "Group", "LoadedModel", "ModelLoadError",
           "OnnxPruneError", "PruneError", "PruneOptions", "PruneResult", "Pruned", "ShapeError", "ValidationError",
           "analyse", "analyse_model", "apply_plan", "load", "masked_model", "prune", "prune_group"]
