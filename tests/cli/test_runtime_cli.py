"""`validate` and `bench` with --runtime openvino: a pruned model loads and matches there (and a broken one fails),
bench prints OpenVINO's figures; a provider with --runtime openvino, or openvino missing, is one line and exit 2."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from onnxprune.cli import main
from onnxprune.runtime import openvino, tensorrt_works
from tests.support.plan_check import prune_and_revalidate


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def pruned_cnn(exported_model, tmp_path_factory):
    """(original, pruned, plan) of the small ResNet pruned at 0.5."""
    source = exported_model("resnet_basic", "torchscript", True)
    out = tmp_path_factory.mktemp("ov") / "pruned.onnx"
    pruned = prune_and_revalidate(source, out, "--ratio", "0.5")
    assert pruned.result.exit_code == 0, pruned.result.output
    return source, out, out.with_suffix(".plan.json")


def test_validate_on_openvino_passes_for_a_pruned_cnn(pruned_cnn):
    pytest.importorskip("openvino")
    source, out, plan = pruned_cnn
    text = run("validate", source, out, "--plan", plan, "--oracle", "--runtime", "openvino")
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("PASSED vs mask oracle")
    assert "(OpenVINO CPU; reference on onnxruntime CPUExecutionProvider)" in text.stdout
    data = json.loads(run("validate", source, out, "--plan", plan, "--oracle", "--runtime", "openvino",
                          "--json").stdout)
    assert data["passed"] and data["provider"] == "OpenVINO CPU"
    assert data["reference_provider"] == "CPUExecutionProvider" and data["max_abs_diff"] <= data["tolerance"]


def test_validate_on_openvino_fails_for_altered_weights(pruned_cnn, tmp_path):
    pytest.importorskip("openvino")
    source, out, plan = pruned_cnn
    model = onnx.load(out)
    weight = next(t for t in model.graph.initializer if len(t.dims) == 4)  # the first conv's kernel
    values = numpy_helper.to_array(weight).copy()
    values[0] += 0.5
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, broken)
    text = run("validate", source, broken, "--plan", plan, "--oracle", "--runtime", "openvino")
    assert text.exit_code == 1, text.output
    assert text.stdout.startswith("FAILED vs mask oracle") and "OpenVINO CPU" in text.stdout


def test_validate_on_openvino_a_pruned_transformer(exported_model, tmp_path):
    """Heads pruned from the zoo BERT encoder: dynamic [batch, seq] inputs on OpenVINO, judged by the oracle."""
    pytest.importorskip("openvino")
    source = exported_model("bert_encoder", "torchscript", True)
    out = tmp_path / "bert.onnx"
    pruned = prune_and_revalidate(source, out, "--heads-ratio", "0.5", "--ratio", "0.5", "--no-hidden",
                                  "--factor-policy", "leading")
    assert pruned.result.exit_code == 0, pruned.result.output
    text = run("validate", source, out, "--plan", out.with_suffix(".plan.json"), "--oracle", "--runtime",
               "openvino")
    assert text.exit_code == 0 and "PASSED vs mask oracle" in text.stdout, text.output


def test_bench_on_openvino_prints_its_figures(pruned_cnn):
    pytest.importorskip("openvino")
    source, out, _ = pruned_cnn
    text = run("bench", source, out, "--runtime", "openvino", "--runs", "3", "--warmup", "1")
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].startswith("OpenVINO CPU, batch 1, 3 runs after 1 warm-up")
    assert "speedup (median of first / median of second)" in text.stdout
    data = json.loads(run("bench", source, out, "--runtime", "openvino", "--runs", "2", "--warmup", "0",
                          "--batch", "2", "--json").stdout)
    assert data["runtime"] == "openvino" and data["provider"] == "OpenVINO CPU" and data["batch"] == 2
    assert all(np.isfinite(m["median_ms"]) and m["median_ms"] > 0 for m in data["models"])


@pytest.mark.parametrize("command", ["bench", "validate"])
def test_a_provider_with_openvino_is_one_line_and_exit_2(pruned_cnn, command):
    source, out, _ = pruned_cnn
    args = [source, out] if command == "validate" else [out]
    text = run(command, *args, "--runtime", "openvino", "--provider", "cpu")
    assert text.exit_code == 2 and text.stdout == ""
    assert text.stderr.count("\n") == 1 and "does not apply to --runtime openvino" in text.stderr, text.stderr


@pytest.mark.parametrize("command", ["bench", "validate"])
def test_openvino_missing_is_one_line_and_exit_2(pruned_cnn, monkeypatch, command):
    source, out, _ = pruned_cnn
    openvino.openvino_module.cache_clear()
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    try:
        args = [source, out] if command == "validate" else [out]
        text = run(command, *args, "--runtime", "openvino")
    finally:
        openvino.openvino_module.cache_clear()
    assert text.exit_code == 2 and text.stdout == ""
    assert text.stderr.count("\n") == 1 and "pip install openvino" in text.stderr, text.stderr


def test_bench_tensorrt_without_it_is_one_line_and_exit_2(pruned_cnn):
    if tensorrt_works():
        pytest.skip("TensorRT works here")
    text = run("bench", pruned_cnn[1], "--provider", "tensorrt", "--runs", "1")
    assert text.exit_code == 2 and "--provider tensorrt" in text.stderr and text.stderr.count("\n") == 1
