"""The command line: exit codes, one-line errors, JSON keys, and that the input is never touched."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from onnxprune.cli import main

REPORT_KEYS = {"input", "output", "criterion", "ratio", "macs", "params", "groups", "channels_removed",
               "validation", "seconds"}


@pytest.fixture(scope="module")
def resnet(exported_model):
    return exported_model("resnet_basic", "torchscript", True)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_groups_and_inspect(resnet):
    text = run("groups", resnet)
    assert text.exit_code == 0 and "6 prunable, 2 blocked" in text.output
    data = json.loads(run("groups", resnet, "--json").output)
    assert data["prunable"] == 6 and len(data["groups_list"]) == 8
    info = json.loads(run("inspect", resnet, "--json").output)
    assert info["ops"]["Conv"] == {"count": 9, "supported": True} and info["params"] > 0 and info["macs"] > 0


def test_prune_writes_model_report_and_plan(resnet, tmp_path):
    before = open(resnet, "rb").read()
    out, report, plan = tmp_path / "p.onnx", tmp_path / "r.json", tmp_path / "plan.json"
    result = run("prune", resnet, out, "--ratio", "0.5", "--report", report, "--plan", plan)
    assert result.exit_code == 0, result.output
    assert "validation: PASSED (mask oracle" in result.output
    data = json.loads(report.read_text())
    assert REPORT_KEYS <= set(data) and data["macs"]["after"] < data["macs"]["before"]
    assert data["validation"]["passed"] and data["validation"]["oracle"]
    steps = json.loads(plan.read_text())
    assert steps["groups"] and "conv1.weight" in steps["initializers"]
    assert open(resnet, "rb").read() == before


@pytest.mark.parametrize("case", ["garbage", "empty", "missing", "same_as_input", "missing_dir"])
def test_bad_input_is_one_line_and_exit_2(resnet, tmp_path, case):
    source, out = tmp_path / "in.onnx", tmp_path / "out.onnx"
    if case == "garbage":
        source.write_bytes(b"\x01\x02 not a model")
    elif case == "empty":
        source.write_bytes(b"")
    elif case in ("same_as_input", "missing_dir"):
        source.write_bytes(open(resnet, "rb").read())
        out = source if case == "same_as_input" else tmp_path / "nope" / "out.onnx"
    before = source.read_bytes() if source.exists() else None
    result = run("prune", source, out)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("onnxprune: error:")
    assert (source.read_bytes() if source.exists() else None) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if case == "missing" else ["in.onnx"])


def test_validate_and_bench_commands(resnet, tmp_path):
    out, plan = tmp_path / "p.onnx", tmp_path / "plan.json"
    assert run("prune", resnet, out, "--plan", plan, "--ratio", "0.3").exit_code == 0
    oracle = run("validate", resnet, out, "--plan", plan, "--oracle", "--json")
    assert oracle.exit_code == 0 and json.loads(oracle.output)["passed"]
    drift = run("validate", resnet, out)  # the unmasked original differs: exit 1
    assert drift.exit_code == 1
    timing = json.loads(run("bench", resnet, out, "--runs", "3", "--warmup", "1", "--json").output)
    assert timing["provider"] == "CPUExecutionProvider" and timing["speedup"] > 0
    assert all(m["median_ms"] > 0 for m in timing["models"])
