"""Depthwise and grouped convs state the channel multiples onnxruntime's fast kernels need; selection keeps
pruned counts at those multiples by default (and can be told not to)."""

from __future__ import annotations

import onnxprune as op
from onnxprune.scoring.importance import compute_importance
from onnxprune.selection import SelectionOptions, select


def test_depthwise_groups_keep_multiples_of_8(exported_model):
    dg = op.analyse_model(exported_model("mobilenet_v3", "torchscript", False))
    scores = compute_importance(dg)
    hinted = [g for g in dg.prunable_groups() if g.multiple == 8 and g.size >= 16]
    assert hinted, "mobilenet_v3 has depthwise groups of 16+ channels"
    plan = select(dg, scores, SelectionOptions(ratio=0.3))
    plain = select(dg, scores, SelectionOptions(ratio=0.3, speed_multiples=False))
    for group in hinted:
        assert (group.size - len(plan.get(group.id, []))) % 8 == 0
    assert any((g.size - len(plain.get(g.id, []))) % 8 for g in hinted)  # the hint changed something
    for group in dg.prunable_groups():
        if group.multiple == 1:
            assert plan.get(group.id) == plain.get(group.id)


def test_grouped_conv_hint_is_per_group_count(exported_model):
    dg = op.analyse_model(exported_model("resnext", "torchscript", True))
    grouped = [g for g in dg.prunable_groups() if g.multiple > 1]
    assert grouped and all(g.multiple == 16 for g in grouped)
