"""onnxprune.validation.bench: latency report keys, alternating runs, bad arguments, providers that do not work."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxprune.errors import OnnxPruneError, ProviderError
from onnxprune.runtime.sessions import cuda_works
from onnxprune.validation.bench import benchmark
from tests.support.tiny_models import classifier


@pytest.fixture
def weight() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((4, 6))


def test_benchmark_two_models_alternating(weight):
    report = benchmark([classifier(weight), classifier(weight[:, :3])], provider="cpu", batch=4, runs=7, warmup=2,
                       threads=1)
    d = report.to_dict()
    assert {"provider", "batch", "runs", "models", "speedup"} <= set(d)
    assert d["provider"] == "CPUExecutionProvider" and d["batch"] == 4 and d["runs"] == 7
    assert len(d["models"]) == 2
    for m in d["models"]:
        assert {"path", "median_ms", "p90_ms", "min_ms", "std_ms"} <= set(m)
        assert 0 < m["min_ms"] <= m["median_ms"] <= m["p90_ms"]
    assert d["speedup"] > 0 and d["paired_speedup"] > 0
    assert d["other_load"] is None or 0 <= d["other_load"] <= 1
    assert d["spinning"] is False  # alternating sessions must not busy-wait on each other's cores
    assert len(report.models[0].times_ms) == 7
    assert "speedup" in report.format_table()
    json.dumps(d)


def test_benchmark_one_model_from_path(tmp_path, weight):
    path = tmp_path / "m.onnx"
    onnx.save(classifier(weight), path)
    report = benchmark([path], provider="cpu", runs=3, warmup=0)
    assert report.runs == 3
    assert benchmark([path], provider="cpu", runs=3, warmup=2, min_seconds=0.05).runs > 3
    assert report.speedup is None and report.to_dict()["speedup"] is None
    assert report.spinning is True
    assert report.models[0].path == str(path)


def test_benchmark_rejects_bad_arguments(weight):
    with pytest.raises(OnnxPruneError):
        benchmark([], provider="cpu")
    with pytest.raises(OnnxPruneError):
        benchmark([classifier(weight)], provider="cpu", runs=0)


@pytest.mark.skipif(cuda_works(), reason="CUDA works here")
def test_benchmark_on_cuda_without_cuda_is_a_provider_error(weight):
    with pytest.raises(ProviderError, match="--provider cuda"):
        benchmark([classifier(weight)], provider="cuda", runs=1, warmup=0)
