"""Selection that knows the data and accuracy targets, on an MLP trained on the digits in the test (64 -> 128 ->
12 -> 128 -> 10: two wide layers and a narrow bottleneck). Accuracy is measured on the test split, which no
pruning decision sees; calibration (fit) and held-out batches come from their own splits."""

from __future__ import annotations

import pytest

import onnxprune as op
from onnxprune.analysis.stats import count_macs
from onnxprune.apply import apply_plan
from onnxprune.data import Calibration
from onnxprune.reconstruct import ReconstructOptions
from onnxprune.scoring import ImportanceOptions, compute_importance
from onnxprune.search import (
    AccuracyTarget,
    Evaluator,
    allocate,
    measure_sensitivity,
    plan_for_target,
    plan_pruning,
)
from onnxprune.selection import SelectionOptions
from onnxprune.validation.checks import check_model
from tests.support.trained import accuracy, digits_data, digits_mlp


def _batches(x, size: int = 64) -> list[dict]:
    return [{"x": x[s:s + size]} for s in range(0, len(x), size)]


@pytest.fixture(scope="module")
def bottleneck(tmp_path_factory):
    """(dg, fit batches, held-out batches, group ids {'wide1', 'narrow', 'wide2'}, test accuracy)."""
    data = digits_data()
    path = digits_mlp(tmp_path_factory.mktemp("trained") / "mlp.onnx", (128, 12, 128))
    dg = op.analyse_model(path)
    ids = {name: dg.group_of(weight, 0)[0].id for name, weight in
           (("wide1", "0.weight"), ("narrow", "2.weight"), ("wide2", "4.weight"))}
    return dg, _batches(data.calib[0]), _batches(data.held_out[0]), ids, accuracy(path, *data.test)


def _test_accuracy(dg, groups) -> float:
    return accuracy(apply_plan(dg, groups).exported, *digits_data().test)


def _macs(dg, groups) -> float:
    return count_macs(apply_plan(dg, groups).graph) / count_macs(dg.graph)


def test_the_bottleneck_is_fragile_and_allocation_spares_it(bottleneck):
    dg, fit, _, ids, _ = bottleneck
    evaluator = Evaluator(dg, fit)
    curves = measure_sensitivity(dg, compute_importance(dg, ImportanceOptions("l2")), evaluator)
    assert evaluator.calls == 9  # one candidate per group and ratio
    for k, margin in enumerate((1.25, 1.25, 1.05)):  # at every ratio, pruning the bottleneck alone hurts most
        # measured relative errors (narrow / widest wide): 0.26 / 0.20, 0.66 / 0.47, 0.84 / 0.73
        errors = {name: curves[gid].points[k].measurement.metrics.relative_error for name, gid in ids.items()}
        assert errors["narrow"] > margin * max(errors["wide1"], errors["wide2"]), errors
    order = [step.gid for step in allocate(curves, evaluator.original).steps]
    assert order.index(ids["narrow"]) > max(order.index(ids["wide1"]), order.index(ids["wide2"]))
    plan = plan_pruning(dg, "l2", SelectionOptions(ratio=0.5), fit, allocate="sensitivity")
    ratios = {name: len(plan.groups.get(gid, [])) / dg.group(gid).size for name, gid in ids.items()}
    assert ratios["narrow"] <= 0.25 and ratios["narrow"] < ratios["wide1"], ratios


@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_sensitivity_allocation_keeps_more_accuracy_at_the_same_macs(bottleneck, ratio):
    dg, fit, _, _, _ = bottleneck
    options = SelectionOptions(ratio=ratio)
    uniform = plan_pruning(dg, "l2", options)
    spent = plan_pruning(dg, "l2", options, fit, allocate="sensitivity")
    assert _macs(dg, spent.groups) <= _macs(dg, uniform.groups)  # the uniform ratio's MACs budget, no more
    # measured: ratio 0.3 -> 61.1% (uniform) vs 89.5% (sensitivity); ratio 0.5 -> 32.3% vs 84.6%
    assert _test_accuracy(dg, spent.groups) > _test_accuracy(dg, uniform.groups) + 0.15
    check_model(apply_plan(dg, spent.groups).exported)


def test_sensitivity_allocation_meets_a_macs_target(bottleneck):
    dg, fit, _, _, _ = bottleneck
    plan = plan_pruning(dg, "l2", SelectionOptions(target_macs=0.6), fit, allocate="sensitivity")
    assert 0.55 < _macs(dg, plan.groups) <= 0.6
    assert any("sensitivity allocation" in note for note in plan.notes)


@pytest.mark.parametrize("allocation", ["uniform", "sensitivity"])
def test_accuracy_target_holds_on_held_out_data_and_prunes_more_than_a_safe_ratio(bottleneck, allocation):
    dg, fit, held, _, _ = bottleneck
    target = AccuracyTarget(min_agreement=0.95)
    plan, result = plan_for_target(dg, target, "l2", None, Calibration(fit=fit, holdout=held), allocate=allocation)
    assert result.reached and plan.groups == result.groups and result.message.startswith("target")
    # re-measured independently of the search, on the held-out batches
    measured = Evaluator(dg, held)(plan.groups).metrics
    assert measured.agreement >= 0.95 and measured.agreement == result.measurement.metrics.agreement
    safe = plan_pruning(dg, "l2", SelectionOptions(ratio=0.1)).groups
    # measured: MACs kept 81.7% (uniform), 65.3% (sensitivity) vs 86.2% at ratio 0.1
    assert _macs(dg, plan.groups) < _macs(dg, safe) - 0.03
    assert len(result.trials) <= 10  # bisection: a handful of candidates, not a sweep
    assert _test_accuracy(dg, plan.groups) > 0.85


def test_unreachable_target_is_reported_and_sensitivity_finds_a_way_around_it(bottleneck):
    dg, fit, held, ids, _ = bottleneck
    target = AccuracyTarget(min_agreement=0.99)
    calibration = Calibration(fit=fit, holdout=held)
    options = SelectionOptions(round_to=8)  # any uniform step takes 4 of the bottleneck's 12 units (12 -> 8)
    plan, result = plan_for_target(dg, target, "l2", options, calibration)
    assert not result.reached and plan.groups == {} and result.groups == {}
    assert "missed even at the smallest step" in result.message
    assert result.measurement.metrics.agreement < 0.9  # measured 69.5%
    assert result.to_dict()["reached"] is False
    plan, result = plan_for_target(dg, target, "l2", options, calibration, allocate="sensitivity")
    assert result.reached and ids["narrow"] not in plan.groups and plan.groups


def test_reconstruction_as_refine_step_lets_the_same_target_prune_more(bottleneck):
    dg, fit, held, _, _ = bottleneck
    target = AccuracyTarget(min_agreement=0.95)
    calibration = Calibration(fit=fit, holdout=held)
    options = SelectionOptions(search_steps=5)
    _, plain = plan_for_target(dg, target, "l2", options, calibration)
    plan, refit = plan_for_target(dg, target, "l2", options, calibration, reconstruct=ReconstructOptions())
    assert plain.reached and refit.reached
    # measured: ratio 0.124 (MACs 83.9%, test accuracy 94.7%) without refit, 0.495 (MACs 43.9%, 95.1%) with it
    assert refit.level > plain.level + 0.15
    assert refit.pruned is not None and refit.pruned.plan == plan.groups
    measured = Evaluator(dg, held)(plan.groups).metrics  # the same plan without the refit misses the target
    assert measured.agreement < 0.95 <= refit.measurement.metrics.agreement
    assert accuracy(refit.pruned.exported, *digits_data().test) > 0.9
    check_model(refit.pruned.exported)


def test_latency_optimisation_orders_steps_by_measured_time(bottleneck):
    dg, fit, held, _, _ = bottleneck
    plan, result = plan_for_target(dg, AccuracyTarget(min_agreement=0.95), "l2", None,
                                   Calibration(fit=fit, holdout=held), allocate="sensitivity", optimize="latency")
    assert result.reached and plan.groups
    assert result.measurement.latency is not None and result.original.latency is not None
    assert result.pruned is not None and result.pruned.plan == plan.groups
