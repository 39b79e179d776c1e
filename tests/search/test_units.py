"""Search building blocks on made-up figures: output metrics, accuracy targets, greedy allocation, ladders."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.errors import OnnxPruneError
from onnxprune.search import AccuracyTarget, Measurement, OutputMetrics, allocate, compare_outputs, split_batches
from onnxprune.search.sensitivity import GroupSensitivity, SensitivityPoint
from onnxprune.search.targets import _last_true


def test_compare_outputs_agreement_drift_and_relative_error():
    ref = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]], dtype=np.float32)
    got = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]], dtype=np.float32)  # second row's arg-max flips
    feature = np.ones((2, 4, 4), dtype=np.float32)
    metrics = compare_outputs([[ref, feature]], [[got, 2 * feature]])
    assert metrics.agreement == 0.5
    assert metrics.drift == pytest.approx(0.5)  # 1 - agreement; the scaled feature map has cosine 1
    energy = (8.0 + 32.0) / (np.sum(ref.astype(np.float64) ** 2) + 32.0)
    assert metrics.relative_error == pytest.approx(np.sqrt(energy))
    assert metrics.samples == 2
    same = compare_outputs([[ref], [ref]], [[ref], [ref]])
    assert (same.agreement, same.drift, same.relative_error, same.samples) == (1.0, 0.0, 0.0, 4)


def test_compare_outputs_changed_shape_or_nan_is_infinite_drift():
    ref = np.ones((2, 3), dtype=np.float32)
    assert compare_outputs([[ref]], [[np.ones((2, 2), dtype=np.float32)]]).drift == float("inf")
    bad = compare_outputs([[ref]], [[np.full((2, 3), np.nan, dtype=np.float32)]])
    assert bad.drift == float("inf") and bad.agreement == 0.0 and bad.relative_error == float("inf")


def test_accuracy_target():
    good = OutputMetrics(agreement=0.97, drift=0.03, cosine=0.999, relative_error=0.1, samples=100)
    assert AccuracyTarget(min_agreement=0.95).holds(good)
    assert not AccuracyTarget(min_agreement=0.98).holds(good)
    assert AccuracyTarget(max_drift=0.05).holds(good) and not AccuracyTarget(max_drift=0.01).holds(good)
    assert not AccuracyTarget(min_agreement=0.9, max_drift=0.01).holds(good)
    no_classifier = OutputMetrics(agreement=None, drift=0.001, cosine=0.999, relative_error=0.1, samples=100)
    with pytest.raises(OnnxPruneError, match="max_drift instead"):
        AccuracyTarget(min_agreement=0.9).holds(no_classifier)
    with pytest.raises(ValueError):
        AccuracyTarget()
    with pytest.raises(ValueError):
        AccuracyTarget(min_agreement=1.5)


def _curve(gid: int, points: list[tuple[float, float, int]]) -> GroupSensitivity:
    """A group curve from (ratio, relative error, MACs left) triples."""
    curve = GroupSensitivity(gid, 16)
    for ratio, error, macs in points:
        metrics = OutputMetrics(agreement=None, drift=error, cosine=1.0, relative_error=error, samples=1)
        curve.points.append(SensitivityPoint(ratio, (0,), Measurement(metrics, macs, 0)))
    return curve


def test_greedy_allocation_takes_least_damage_per_mac_and_jumps_non_convex_curves():
    original = Measurement(OutputMetrics(None, 0.0, 1.0, 0.0, 1), macs=1000, params=0)
    curves = {
        1: _curve(1, [(0.25, 0.1, 900), (0.5, 0.2, 800)]),  # energy 0.01 then 0.04 per 100 MACs
        2: _curve(2, [(0.25, 0.5, 950), (0.5, 0.5, 700)]),  # a costly first step, then a free one: jump to 0.5
        3: _curve(3, [(0.25, float("inf"), 990)]),  # a candidate that broke the outputs is never taken
    }
    allocation = allocate(curves, original)
    assert [(s.gid, s.ratio) for s in allocation.steps] == [(1, 0.25), (1, 0.5), (2, 0.5)]
    assert allocation.steps[1].damage == pytest.approx(0.04 - 0.01)
    assert allocation.ratios(1) == {1: 0.25}
    assert allocation.ratios(2.5) == {1: 0.5, 2: 0.25}  # half of the third step
    damage, saved = allocation.predicted(3)
    assert damage == pytest.approx(0.04 + 0.25) and saved == pytest.approx((200 + 300) / 1000)
    with pytest.raises(ValueError, match="timed"):
        allocate(curves, original, cost="latency")


def test_bisection_finds_the_last_rung_that_holds():
    for count in range(1, 20):
        for edge in range(-1, count):
            tried = []
            assert _last_true(count, lambda i, tried=tried, edge=edge: tried.append(i) or i <= edge) == edge
            assert len(tried) <= int(np.ceil(np.log2(count + 1)))
            if edge == -1:
                assert 0 in tried  # "missed even at the smallest step" is only said after measuring it


def test_split_batches():
    batches = [{"x": np.full((2, 1), k)} for k in range(8)]
    fit, held = split_batches(batches, 0.25)
    assert [b["x"][0, 0] for b in fit] == list(range(6)) and [b["x"][0, 0] for b in held] == [6, 7]
    with pytest.raises(OnnxPruneError, match="at least 2 batches"):
        split_batches(batches[:1])
