"""Shared checks for pruning exported models: prune one group, verify sizes, checker/onnxruntime and the oracle."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

import onnxprune as op
from onnxprune.validation.oracle import compare
from tests.support.checked import checked_prune

# Reasons a zoo model's channel group may legitimately be blocked.
LEGIT_BLOCKS = ("graph input", "graph output", "would empty")


def initializer_shapes(model) -> dict[str, tuple[int, ...]]:
    """{initializer name: shape} of a ModelProto."""
    return {init.name: tuple(init.dims) for init in model.graph.initializer}


def check_group_prune(dg, group, units) -> dict:
    """Prune ``units`` of ``group``; assert every constant member shrank by the right count, the model passed the
    checker and onnxruntime (prune does that), and it matches the mask oracle when the group is exact."""
    result = checked_prune(dg, {group.id: units})
    shapes = initializer_shapes(result.model)
    for axis in group.constants():
        tensor = dg.tensors[axis.tensor]
        removed = len(group.indices(axis, units))
        before = tensor.shape if tensor.shape is not None else tensor.values.shape
        assert axis.tensor in shapes, f"{axis.tensor} vanished from the pruned model"
        assert shapes[axis.tensor][axis.axis] == before[axis.axis] - removed, (axis, shapes[axis.tensor])
    report = compare(op.masked_model(dg, {group.id: units}), result.model)
    if group.exact:
        assert report.passed, f"{group.details()}\n{report}"
    return {"max_abs_diff": report.max_abs_diff, "exact": group.exact}


def check_all_groups(dg, seed: int = 0) -> int:
    """Prune every prunable group by one random channel and by half of its channels; returns the count pruned."""
    rng = np.random.default_rng(seed)
    for group in dg.channel_groups():
        if not group.prunable:
            assert all(any(word in r for word in LEGIT_BLOCKS) for r in group.blocked_reasons), group.details()
    pruned = 0
    for group in dg.prunable_groups():
        check_group_prune(dg, group, [int(rng.integers(group.size))])
        if group.size >= 2:
            check_group_prune(dg, group, sorted(rng.choice(group.size, group.size // 2, replace=False).tolist()))
        pruned += 1
    return pruned


def is_constant(dg, name: str) -> bool:
    """Whether ``name`` is a constant of the analysed graph."""
    return isinstance(dg.tensors.get(name), gs.Constant)
