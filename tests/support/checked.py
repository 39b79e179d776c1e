"""Prune and check in one call, as the tests want it: apply the plan, then the checks every written model gets
(onnx.checker full_check and an onnxruntime session, excusing checker errors the original has too)."""

from __future__ import annotations

import onnxprune as op
from onnxprune.ir.export import export_graph
from onnxprune.validation.checks import check_model


def checked_prune(dg: op.DependencyGraph, plan: dict) -> op.PruneResult:
    """``op.apply_plan(dg, plan)`` whose result passed ``check_model``; raises ValidationError otherwise."""
    result = op.apply_plan(dg, plan)
    check_model(result.exported, original=lambda: export_graph(dg.graph, dg.loaded))
    return result
