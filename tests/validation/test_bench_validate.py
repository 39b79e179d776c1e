"""onnxprune.bench and onnxprune.validate: latency report keys, output comparison, plan JSON round trip, oracle."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune as op
from onnxprune.errors import OnnxPruneError, PruneError, ValidationError
from onnxprune.selection import Plan
from onnxprune.validation.bench import benchmark
from onnxprune.validation.validate import check_file, load_plan, validate
from tests.support.checked import checked_prune


def classifier(weight: np.ndarray) -> onnx.ModelProto:
    """x[N, 4] -> Relu(x @ W) -> y[N, classes]: a tiny classifier-like model."""
    w = numpy_helper.from_array(weight.astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", weight.shape[1]])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


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


def test_validate_identical_passes(weight):
    report = validate(classifier(weight), classifier(weight))
    d = report.to_dict()
    assert {"passed", "max_abs_diff", "mean_abs_diff", "cosine", "top1_agreement", "oracle", "tolerance",
            "provider"} <= set(d)
    assert d["passed"] and d["max_abs_diff"] == 0 and d["cosine"] == pytest.approx(1.0)
    assert d["top1_agreement"] == 1.0 and d["oracle"] is False
    json.dumps(d)


def test_validate_perturbed_fails(weight):
    report = validate(classifier(weight), classifier(weight + 0.05), batch=16)
    assert not report.passed and report.max_abs_diff > report.tolerance
    assert 0 < report.cosine < 1
    assert report.top1_agreement is not None
    assert validate(classifier(weight), classifier(weight + 0.05), atol=10.0).passed


def test_validate_shape_change_fails(weight):
    report = validate(classifier(weight), classifier(weight[:, :3]))
    assert not report.passed and "shape" in report.reason


def test_validate_with_calibration_npz(tmp_path, weight):
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.ones((3, 4)))  # float64 on disk: cast to the input type
    assert validate(classifier(weight), classifier(weight), calib=str(calib)).passed
    with pytest.raises(OnnxPruneError, match="lacks"):
        validate(classifier(weight), classifier(weight), calib={"other": np.ones((3, 4), np.float32)})


def test_check_file(tmp_path, weight):
    good = tmp_path / "good.onnx"
    onnx.save(classifier(weight), good)
    check_file(good)
    bad = tmp_path / "bad.onnx"
    model = classifier(weight)
    model.graph.node[0].input[1] = "missing"
    onnx.save(model, bad)
    with pytest.raises(ValidationError, match="bad.onnx"):
        check_file(bad)


def test_oracle_validation_with_plan_json_round_trip(exported_model, tmp_path):
    source = exported_model("resnet_basic", "torchscript", False)
    dg = op.analyse_model(source)
    groups = dg.prunable_groups()
    plan = {groups[0].id: [0, 3], groups[2].id: list(range(0, groups[2].size, 2))}
    result = checked_prune(dg, plan)
    pruned = tmp_path / "pruned.onnx"
    result.save(str(pruned))
    check_file(pruned)
    doc = Plan(groups=plan, criterion="manual", ratio=0.0).to_dict(dg)
    entry = doc["groups"][0]
    assert entry["root"] == {"tensor": groups[0].root.tensor, "axis": groups[0].root.axis}
    assert entry["removed"] == [0, 3] and any(m["tensor"] == groups[0].root.tensor for m in entry["members"])
    for name, entry in doc["initializers"].items():
        for axis, kept in entry["kept"].items():
            size = dg.tensors[name].shape[int(axis)]
            assert len(kept) == size - len(result.removed[op.ChannelAxis(name, int(axis))])
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(doc))
    assert load_plan(plan_path, op.analyse_model(source)) == {g: sorted(u) for g, u in plan.items()}

    report = validate(source, pruned, plan=str(plan_path), oracle=True)
    assert report.passed and report.oracle and report.exact, report.format()
    assert validate(source, pruned, plan=plan, oracle=True).passed
    assert not validate(source, pruned).passed  # pruning changes the outputs of the unmasked original


def test_load_plan_rejects_unknown_root(exported_model):
    dg = op.analyse_model(exported_model("resnet_basic", "torchscript", False))
    with pytest.raises(PruneError, match="nope"):
        load_plan({"groups": [{"root": {"tensor": "nope", "axis": 0}, "removed": [0]}]}, dg)
    with pytest.raises(OnnxPruneError, match="plan"):
        validate(exported_model("resnet_basic", "torchscript", False),
                 exported_model("resnet_basic", "torchscript", False), oracle=True)
