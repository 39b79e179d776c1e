"""The one output comparer (onnxprune.validation.comparison): the oracle tolerance, the drift criterion (top-1
agreement for [N, classes] outputs, cosine for others), NaN/inf semantics, shapes, inputs and providers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxprune.errors import OnnxPruneError, ProviderError
from onnxprune.runtime import make_session, random_inputs
from onnxprune.runtime.sessions import cuda_works
from onnxprune.validation.comparison import Comparison, compare, max_abs_diff
from onnxprune.validation.validate import validate
from tests.support.tiny_models import classifier, sequence_model

KEYS = {"passed", "oracle", "criterion", "reference", "exact", "max_abs_diff", "mean_abs_diff", "cosine",
        "top1_agreement", "drift", "tolerance", "max_drift", "scale", "provider", "inputs", "outputs", "reason",
        "note"}


@pytest.fixture
def weight() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((4, 6))


def outputs_of(model, batch: int, seed: int = 0) -> np.ndarray:
    session = make_session(model, "cpu")
    return session.run(None, random_inputs(session, batch=batch, seed=seed))[0]


@pytest.mark.parametrize("oracle", [True, False])
def test_identical_models_pass_with_zero_difference(weight, oracle):
    report = compare(classifier(weight), classifier(weight), oracle=oracle)
    d = report.to_dict()
    assert KEYS <= set(d) and d["passed"] and d["max_abs_diff"] == 0 and d["drift"] == 0
    assert d["cosine"] == pytest.approx(1.0) and d["top1_agreement"] == 1.0
    assert d["criterion"] == ("tolerance" if oracle else "drift")
    assert (d["tolerance"] is not None) == oracle and (d["max_drift"] is not None) != oracle
    assert Comparison.from_dict(json.loads(json.dumps(d))) == report


def test_oracle_tolerance_fails_on_any_real_change(weight):
    report = compare(classifier(weight), classifier(weight + 0.05), batch=16)
    assert not report.passed and report.max_abs_diff > report.tolerance
    assert report.tolerance == pytest.approx(1e-4 * max(1.0, report.scale))
    assert report.format().startswith("FAILED vs mask oracle: max |diff|")
    assert compare(classifier(weight), classifier(weight + 0.05), atol=10.0).passed


def test_drift_of_a_classifier_output_is_one_minus_top1_agreement(weight):
    swapped = weight[:, [1, 0, 2, 3, 4, 5]]  # two classes swap: every sample predicting either flips
    ref, got = outputs_of(classifier(weight), 64), outputs_of(classifier(swapped), 64)
    agreement = float(np.mean(ref.argmax(1) == got.argmax(1)))
    assert 0 < agreement < 0.99  # the premise: some, not all, top-1 predictions change
    report = compare(classifier(weight), classifier(swapped), oracle=False, batch=64)
    assert report.top1_agreement == pytest.approx(agreement) and report.drift == pytest.approx(1 - agreement)
    assert not report.passed and report.max_drift == 0.01
    assert compare(classifier(weight), classifier(swapped), oracle=False, batch=64, max_drift=1 - agreement).passed
    assert report.format().startswith(f"FAILED vs original: drift {1 - agreement:.3g} (allowed 0.01")


def test_drift_of_other_outputs_is_one_minus_cosine(weight):
    noisy = weight + 0.2 * np.random.default_rng(1).standard_normal(weight.shape)
    ref = outputs_of(sequence_model(weight), 16).astype(np.float64).ravel()
    got = outputs_of(sequence_model(noisy), 16).astype(np.float64).ravel()
    cosine = ref @ got / np.linalg.norm(ref) / np.linalg.norm(got)
    report = compare(sequence_model(weight), sequence_model(noisy), oracle=False)
    assert report.top1_agreement is None and report.cosine == pytest.approx(cosine, abs=1e-6)
    assert report.drift == pytest.approx(1 - cosine, abs=1e-6) and 0.01 < report.drift < 0.5
    assert not report.passed
    assert compare(sequence_model(weight), sequence_model(noisy), oracle=False, max_drift=0.5).passed


def test_non_finite_outputs_must_match_exactly(weight):
    with_nan = weight.copy()
    with_nan[:, 2] = np.nan
    same = compare(classifier(with_nan), classifier(with_nan), oracle=False)
    assert same.passed and same.max_abs_diff == 0 and same.drift == 0
    differs = compare(classifier(with_nan), classifier(weight), oracle=False, max_drift=1e9)
    assert differs.max_abs_diff == float("inf") and differs.drift == float("inf") and not differs.passed
    assert not compare(classifier(with_nan), classifier(weight), atol=1e9).passed
    a = np.array([1.0, np.inf, np.nan], np.float32)
    assert max_abs_diff(a, a.copy()) == 0.0
    assert max_abs_diff(a, np.array([1.0, -np.inf, np.nan], np.float32)) == float("inf")
    assert max_abs_diff(a, a[:2]) == float("inf")


@pytest.mark.parametrize("oracle", [True, False])
def test_a_changed_output_shape_fails_whatever_the_threshold(weight, oracle):
    report = compare(classifier(weight), classifier(weight[:, :3]), oracle=oracle, atol=1e9, max_drift=1e9)
    assert not report.passed and "shape" in report.reason and report.drift == float("inf")


def test_validate_compares_with_the_original_by_drift(weight):
    report = validate(classifier(weight), classifier(weight + 0.05), batch=16, provider="cpu")
    assert not report.oracle and report.criterion == "drift" and report.inputs == "16 random samples (seed 0)"
    assert report.passed == (report.drift <= 0.01)
    with pytest.raises(OnnxPruneError, match="needs the plan"):
        validate(classifier(weight), classifier(weight), oracle=True)


def test_calibration_inputs_are_cast_and_counted(tmp_path, weight):
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.ones((3, 4)))  # float64 on disk: cast to the input type
    report = validate(classifier(weight), classifier(weight), calib=str(calib))
    assert report.passed and report.inputs == "3 calibration samples"
    with pytest.raises(OnnxPruneError, match="lacks"):
        validate(classifier(weight), classifier(weight), calib={"other": np.ones((3, 4), np.float32)})


def test_given_feeds_are_used_as_they_are(weight):
    feeds = [{"x": np.ones((2, 4), np.float32)}, {"x": np.zeros((3, 4), np.float32)}]
    report = compare(classifier(weight), classifier(weight), feeds)
    assert report.passed and report.inputs == "5 given samples"
    assert report.outputs[0]["shape"] == [5, 6]


@pytest.mark.skipif(cuda_works(), reason="CUDA works here")
def test_a_provider_that_does_not_work_is_a_provider_error(weight):
    with pytest.raises(ProviderError, match="--provider cuda"):
        compare(classifier(weight), classifier(weight), provider="cuda")
