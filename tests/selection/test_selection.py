"""Selection: local and global counts, caps, rounding, ignore patterns, targets, determinism and the plan JSON."""

from __future__ import annotations

import json

import numpy as np
import onnx_graphsurgeon as gs
import pytest

import onnxprune as op
from onnxprune.errors import PruneError
from onnxprune.search import measure, plan_pruning, planning
from onnxprune.selection import Plan
from onnxprune.selection.select import SelectionOptions, ignored_groups, keep_axes_nonempty, select, units_to_remove
from onnxprune.validation.oracle import compare
from tests.scoring.test_importance import CHAIN, HEADER, build
from tests.support.checked import checked_prune

TWO_BRANCHES = HEADER + """
agraph (float[N,3,6,6] x) => (float[N,5,6,6] y)
  <float[8,3,1,1] wa, float[16,3,1,1] wb, float[5,24,1,1] wc> {
  a = Conv (x, wa)
  b = Conv (x, wb)
  c = Concat <axis=1> (a, b)
  r = Relu (c)
  y = Conv (r, wc)
}"""


@pytest.mark.parametrize("size,ratio,max_ratio,round_to,expected", [
    (10, 0.3, 1.0, None, 3), (7, 0.5, 1.0, None, 4), (16, 0.5, 1.0, None, 8), (3, 0.3, 1.0, None, 1),
    (2, 0.9, 1.0, None, 1), (1, 0.9, 1.0, None, 0),  # never all units
    (16, 0.5, 0.25, None, 4),  # max_ratio caps
    (20, 0.3, 1.0, 8, 4), (20, 0.5, 1.0, 8, 12), (20, 0.9, 1.0, 8, 12),  # kept 14 -> 16, 10 -> 8, never below 8
    (6, 0.5, 1.0, 8, 0), (22, 0.05, 1.0, 8, 0),  # too small to round; 21 kept rounds to 24 > 22: left whole
    (32, 0.6, 0.5, 8, 16), (30, 0.6, 0.5, 8, 14),  # rounding up to respect the cap
])
def test_units_to_remove(size, ratio, max_ratio, round_to, expected):
    assert units_to_remove(size, ratio, max_ratio, round_to) == expected


def two_branches():
    return op.analyse_model(build(TWO_BRANCHES))


def test_local_selection_removes_the_lowest_scores_with_ties_by_index():
    dg = two_branches()
    ga, gb = dg.group_of("wa", 0)[0], dg.group_of("wb", 0)[0]
    scores = {ga.id: np.array([5, 1, 1, 7, 0, 3, 9, 2.0]), gb.id: np.arange(16, 0, -1.0)}
    plan = select(dg, scores, SelectionOptions(ratio=0.5))
    assert plan == {ga.id: [1, 2, 4, 7], gb.id: list(range(8, 16))}


def test_global_ranking_spends_the_budget_where_scores_are_lowest():
    dg = two_branches()
    ga, gb = dg.group_of("wa", 0)[0], dg.group_of("wb", 0)[0]
    scores = {ga.id: np.full(8, 0.1) + np.arange(8) * 1e-3, gb.id: np.linspace(1, 2, 16)}
    plan = select(dg, scores, SelectionOptions(ratio=0.25, global_ranking=True))  # 6 of 24 units
    assert plan == {ga.id: [0, 1, 2, 3, 4, 5]}
    capped = select(dg, scores, SelectionOptions(ratio=0.25, global_ranking=True, max_ratio=0.5))
    assert capped == {ga.id: [0, 1, 2, 3]}


def test_ignore_patterns_match_nodes_initializers_and_tensors():
    dg = two_branches()
    ga, gb = dg.group_of("wa", 0)[0], dg.group_of("wb", 0)[0]
    node_a = dg.tensors["a"].inputs[0].name
    prunable = [ga, gb]
    assert ignored_groups(dg, ["wa"], prunable) == {ga.id}
    assert ignored_groups(dg, [node_a], prunable) == {ga.id}
    assert ignored_groups(dg, ["b"], prunable) == {gb.id}
    assert ignored_groups(dg, ["r"], prunable) == {ga.id, gb.id}  # both groups own a slice of r
    assert ignored_groups(dg, ["nothing*"]) == set()
    assert ignored_groups(dg, ["wa"]) == {ga.id, dg.group_of("x", 1)[0].id}  # wa's input axis: blocked group
    scores = {g.id: np.arange(g.size, dtype=float) for g in (ga, gb)}
    assert set(select(dg, scores, SelectionOptions(ignore=("w?",)))) == set()
    assert set(select(dg, scores, SelectionOptions(ignore=["wb"]))) == {ga.id}


def test_shared_axes_are_never_emptied():
    dg = two_branches()
    ga = dg.group_of("wa", 0)[0]
    scores = {ga.id: np.arange(8, dtype=float)}
    assert keep_axes_nonempty(dg, {ga.id: list(range(8))}, scores) == {ga.id: list(range(7))}
    with pytest.raises(PruneError):
        dg.resolve({ga.id: list(range(8))})


def test_plan_is_deterministic_valid_and_matches_the_oracle():
    dg = op.analyse_model(build(CHAIN))
    for criterion in ("l2", "random", "fpgm"):
        first = plan_pruning(dg, criterion, SelectionOptions(ratio=0.5, seed=1))
        assert first.groups == plan_pruning(dg, criterion, SelectionOptions(ratio=0.5, seed=1)).groups
        result = checked_prune(dg, first.groups)
        assert compare(op.masked_model(dg, first.groups), result.model).passed
    a = plan_pruning(dg, "random", SelectionOptions(ratio=0.5, seed=1)).groups
    b = [plan_pruning(dg, "random", SelectionOptions(ratio=0.5, seed=s)).groups for s in range(2, 6)]
    assert any(a != other for other in b)


@pytest.mark.parametrize("key", ["target_macs", "target_params"])
def test_targets_are_reached_by_searching_the_ratio(key):
    dg = two_branches()
    before = measure(dg, {})
    plan = plan_pruning(dg, "l2", SelectionOptions(**{key: 0.6}))
    after = measure(dg, plan.groups)
    index = 0 if key == "target_macs" else 1
    assert after[index] <= 0.6 * before[index]
    assert 0 < plan.ratio < 0.99
    looser = plan_pruning(dg, "l2", SelectionOptions(**{key: 0.9}))
    assert looser.ratio <= plan.ratio
    with pytest.warns(UserWarning, match="cannot be reached"):
        plan_pruning(dg, "l2", SelectionOptions(max_ratio=0.2, **{key: 0.1}))


def test_plan_json_lists_groups_and_kept_initializer_indices():
    dg = two_branches()
    plan = plan_pruning(dg, "l2", SelectionOptions(ratio=0.5))
    data = json.loads(json.dumps(plan.to_dict(dg)))
    assert {g["id"] for g in data["groups"]} == set(plan.groups)
    model = checked_prune(dg, plan.groups).model
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    for name, entry in data["initializers"].items():
        for axis, kept in entry["kept"].items():
            assert shapes[name][int(axis)] == len(kept)
    assert len(data["initializers"]["wc"]["kept"]["1"]) == 12


def test_groups_the_handlers_cannot_rewrite_are_left_whole(monkeypatch):
    dg = two_branches()
    gb = dg.group_of("wb", 0)[0]
    original = planning.apply_plan

    def failing(dg_, plan):
        if gb.id in plan:
            raise PruneError("cannot rewrite")
        return original(dg_, plan)

    monkeypatch.setattr(planning, "apply_plan", failing)
    plan = plan_pruning(dg, "l2", SelectionOptions(ratio=0.5))
    assert gb.id not in plan.groups and plan.groups
    assert any("cannot rewrite" in note for note in plan.notes)
    assert isinstance(plan, Plan)


def test_measure_counts_the_pruned_graph():
    dg = two_branches()
    macs, params = measure(dg, {})
    ga = dg.group_of("wa", 0)[0]
    macs2, params2 = measure(dg, {ga.id: [0, 1]})
    assert params - params2 == 2 * 3 + 2 * 5
    assert macs - macs2 == 36 * (2 * 3 + 2 * 5)
    assert isinstance(dg.tensors["wa"], gs.Constant)


def test_group_ratios_give_each_listed_group_its_own_ratio():
    dg = two_branches()
    ga, gb = dg.group_of("wa", 0)[0], dg.group_of("wb", 0)[0]
    scores = {ga.id: np.arange(8, 0, -1.0), gb.id: np.arange(16, 0, -1.0)}
    plan = select(dg, scores, SelectionOptions(ratio=0.5, group_ratios={ga.id: 0.25}))
    assert plan == {ga.id: [6, 7], gb.id: list(range(8, 16))}  # gb is not listed: it gets ratio
    plan = select(dg, scores, SelectionOptions(ratio=0.0, group_ratios={gb.id: 0.75}, max_ratio=0.5))
    assert plan == {gb.id: list(range(8, 16))}  # caps still hold
    plan = select(dg, scores, SelectionOptions(ratio=0.25, global_ranking=True, group_ratios={ga.id: 0.0}))
    assert ga.id not in plan and len(plan[gb.id]) == 4  # listed groups stay out of the global ranking
    with pytest.raises(ValueError, match="group"):
        SelectionOptions(group_ratios={ga.id: 1.0})
