"""Property test: on random CNN graphs, every prunable group pruned by a random subset gives a valid model that
equals the mask oracle."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import onnxprune as op
from onnxprune.validation.oracle import compare
from tests.support.checked import checked_prune
from tests.support.graphgen import build_random_cnn, cnn_choices


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(choices=cnn_choices(), seed=st.integers(0, 2**16))
def test_random_cnn_groups_match_mask_oracle(choices, seed):
    model = build_random_cnn(choices, seed)
    dg = op.analyse_model(model)
    rng = np.random.default_rng(seed)
    groups = dg.prunable_groups()
    # Grouped convs couple channel r with r + C/groups; two with different alignments can tie every channel of a
    # tensor into one unit, which would empty it: such graphs have nothing to prune (correctly), so skip them.
    assert dg.channel_groups()
    assume(groups)
    plan = {}
    for group in groups:
        count = int(rng.integers(1, group.size)) if group.size > 1 else 0
        units = sorted(rng.choice(group.size, size=count, replace=False).tolist())
        if not units:
            continue
        try:
            result = checked_prune(dg, {group.id: units})
        except op.PruneError as exc:  # only legal refusal: a coupled axis would become empty
            assert "removes all" in str(exc), exc
            continue
        report = compare(op.masked_model(dg, {group.id: units}), result.model)
        assert report.passed, (group.details(), report)
        plan[group.id] = units
    if plan:  # all groups at once (an axis shared by several groups loses the union of their indices)
        try:
            result = checked_prune(dg, plan)
        except op.PruneError as exc:
            assert "removes all" in str(exc), exc
        else:
            assert compare(op.masked_model(dg, plan), result.model).passed
