"""Prune a seed system at a ratio and check it: checker + onnxruntime (via ``checked_prune``) on the whole plan,
onnxruntime at two input sizes, and the mask oracle on the plan's exact groups."""

from __future__ import annotations

import numpy as np

import onnxprune as op
from onnxprune import models
from onnxprune.analysis.stats import count_params
from onnxprune.runtime.sessions import make_session
from onnxprune.validation.oracle import compare
from tests.support.checked import checked_prune

# Two input sizes per model: (args, kwargs) of the spec's example_inputs.
SIZES = {"gcn": [(2,), (3,)], "gat": [(2,), (3,)], "dgcnn": [(2,), (3,)], "unet2d": [(2,), (3,)],
         "yolov8": [(2, 64), (1, 96)], "yolo11": [(2, 64), (1, 96)]}


def feeds(name: str) -> list[dict[str, np.ndarray]]:
    """Feed dicts of ``name`` at its two input sizes."""
    spec = models.ZOO[name]
    return [{n: t.numpy() for n, t in zip(spec.input_names, spec.example_inputs(*args))} for args in SIZES[name]]


def ratio_plan(dg: op.DependencyGraph, ratio: float, seed: int = 0) -> dict[int, list[int]]:
    """Remove int(size * ratio) random units of every prunable group (groups it would empty are skipped)."""
    rng = np.random.default_rng(seed)
    plan = {}
    for group in dg.prunable_groups():
        n = int(group.size * ratio)
        if 0 < n < group.size:
            plan[group.id] = sorted(rng.choice(group.size, n, replace=False).tolist())
    return plan


def prune_and_check(dg: op.DependencyGraph, name: str, ratio: float) -> dict:
    """Prune every prunable group at ``ratio``; assert the model checks, runs at both sizes with the original's
    output shapes, and that the exact groups' pruning matches the mask oracle. Returns figures for the report."""
    plan = ratio_plan(dg, ratio)
    assert plan, f"{name}: nothing to prune at ratio {ratio}"
    result = checked_prune(dg, plan)
    exact = {gid: units for gid, units in plan.items() if dg.group(gid).exact}
    if exact:
        masked = op.masked_model(dg, exact)
        pruned = result if len(exact) == len(plan) else checked_prune(dg, exact)
        for feed in feeds(name):
            report = compare(masked, pruned.model, feed)
            assert report.passed, f"{name} at {ratio}: oracle mismatch\n{report}"
    original, candidate = make_session(op.masked_model(dg, {})), make_session(result.model)
    for feed in feeds(name):  # both sizes run, outputs keep the original's shapes
        want = [o.shape for o in original.run(None, feed)]
        got = [o.shape for o in candidate.run(None, feed)]
        assert got == want, f"{name} at {ratio}: output shapes {got}, expected {want}"
    before, after = count_params(dg.graph), count_params(result.graph)
    return {"groups": len(plan), "exact": len(exact), "params_removed": 1 - after / before}
