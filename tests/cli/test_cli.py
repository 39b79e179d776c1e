"""The command line: exit codes, one-line errors, JSON keys, and that the input is never touched."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from onnxprune.cli import main
from onnxprune.runtime.sessions import cuda_works
from tests.support.plan_check import prune_and_revalidate

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
    assert data["schema_version"] == 1 and data["summary"]["prunable"] == 6 and len(data["groups"]) == 8
    info = json.loads(run("inspect", resnet, "--json").output)
    assert info["ops"]["Conv"] == {"count": 9, "supported": True} and info["params"] > 0 and info["macs"] > 0


def test_prune_writes_model_report_and_plan(resnet, tmp_path):
    before = open(resnet, "rb").read()
    out, report, plan = tmp_path / "p.onnx", tmp_path / "r.json", tmp_path / "plan.json"
    pruned = prune_and_revalidate(resnet, out, "--ratio", "0.5", "--report", report, "--plan", plan)
    assert pruned.result.exit_code == 0, pruned.result.output
    assert "validation: PASSED (mask oracle" in pruned.result.output
    data = json.loads(report.read_text())
    assert REPORT_KEYS <= set(data) and data["macs"]["after"] < data["macs"]["before"]
    assert data["validation"]["passed"] and data["validation"]["oracle"]
    assert data["validation"]["max_abs_diff"] <= data["validation"]["tolerance"]
    steps = json.loads(plan.read_text())
    assert steps["groups"] and "conv1.weight" in steps["initializers"]
    assert steps["exact"] and steps["settings"]["factor_policy"] == "largest"
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
    pruned = prune_and_revalidate(resnet, out, "--plan", plan, "--ratio", "0.3")
    assert pruned.result.exit_code == 0 and pruned.revalidation["passed"] and pruned.revalidation["oracle"]
    assert run("validate", resnet, out, "--plan", plan, "--oracle").output.startswith("PASSED vs mask oracle")
    drift = json.loads(run("validate", resnet, out, "--json", "--max-drift", "2").output)  # vs the original
    assert drift["criterion"] == "drift" and not drift["oracle"] and drift["passed"] and drift["max_abs_diff"] > 0
    assert drift["inputs"] == "16 random samples (seed 0)"
    tight = run("validate", resnet, out, "--max-drift", 0.5 * drift["drift"])
    assert tight.exit_code == 1 and tight.output.startswith("FAILED vs original: drift")
    timing = json.loads(run("bench", resnet, out, "--runs", "3", "--warmup", "1", "--json").output)
    assert timing["provider"] == "CPUExecutionProvider" and timing["speedup"] > 0
    assert all(m["median_ms"] > 0 for m in timing["models"])


@pytest.mark.parametrize("options", [("--heads-ratio", "0.5", "--no-hidden"), ("--heads-ratio", "0.5", "--no-hidden",
                                     "--input-shape", "input_ids:3x9", "--input-shape", "attention_mask:3x9")],
                         ids=["heads-ratio", "heads-ratio-input-shape"])
def test_transformer_head_plans_revalidate_with_their_own_settings(exported_model, tmp_path, options):
    """Plans made with --heads-ratio (factor policy 'leading') or --input-shape used to be re-analysed with the
    defaults by validate, which then refused them ('has 4 channels; the model's has 8')."""
    bert = exported_model("bert_encoder", "torchscript", True)
    pruned = prune_and_revalidate(bert, tmp_path / "bert.onnx", *options)
    assert pruned.result.exit_code == 0, pruned.result.output
    assert pruned.plan["settings"]["factor_policy"] == "leading" and pruned.plan["settings"]["heads_ratio"] == 0.5
    assert any("heads" in g["labels"] for g in pruned.plan["groups"])
    assert pruned.revalidation["oracle"] and pruned.revalidation["passed"]
    if "--input-shape" in options:
        assert pruned.plan["settings"]["input_shapes"] == {"input_ids": [3, 9], "attention_mask": [3, 9]}
        assert pruned.revalidation["inputs"].startswith("3 random samples")


def test_non_exact_plan_reports_drift_and_fails_above_max_drift(exported_model, tmp_path):
    """Pruning the hidden width (groups through LayerNorm) is not mask-exact: prune and validate --oracle judge the
    drift from the original, say why, and fail when --max-drift is below it (prune used to print PASSED)."""
    bert = exported_model("bert_encoder", "torchscript", True)
    loose = prune_and_revalidate(bert, tmp_path / "loose.onnx", "--ratio", "0.5", "--max-drift", "2")
    drift = loose.validation["drift"]
    assert not loose.plan["exact"] and not loose.validation["oracle"] and loose.validation["criterion"] == "drift"
    assert loose.validation["passed"] and loose.result.exit_code == 0 and drift > 0
    assert drift == pytest.approx(1 - loose.validation["top1_agreement"])  # bert_encoder's output is [N, 5]
    assert "validation: PASSED (drift" in loose.result.output and "not oracle-checkable" in loose.result.output
    tight = prune_and_revalidate(bert, tmp_path / "tight.onnx", "--ratio", "0.5", "--max-drift", drift / 2)
    assert tight.result.exit_code == 1 and "validation: FAILED (drift" in tight.result.output
    assert "drifts from the original more than --max-drift allows" in tight.result.stderr
    assert tight.validation["drift"] == pytest.approx(drift) and not tight.revalidation["passed"]
    text = run("validate", bert, tmp_path / "tight.onnx", "--plan", tmp_path / "tight.plan.json", "--oracle",
               "--max-drift", drift / 2)
    assert text.exit_code == 1 and text.output.startswith("FAILED vs original: drift")
    assert "not oracle-checkable" in text.output and "LayerNormalization" in text.output


@pytest.mark.skipif(cuda_works(), reason="CUDA works here: --provider cuda is honoured, not refused")
@pytest.mark.parametrize("command", ["prune", "validate", "bench"])
def test_provider_cuda_without_cuda_is_one_line_and_exit_2(resnet, tmp_path, command):
    """prune used to accept --provider cuda and validate on CPU anyway; bench ended as an 'unexpected' bug."""
    args = {"prune": ["prune", resnet, tmp_path / "out.onnx"], "validate": ["validate", resnet, resnet],
            "bench": ["bench", resnet, "--runs", "1", "--warmup", "0"]}[command]
    result = run(*args, "--provider", "cuda")
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("onnxprune: error: --provider cuda:")
    assert "probably a bug" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_prune_validates_on_the_requested_provider(resnet, tmp_path):
    pruned = prune_and_revalidate(resnet, tmp_path / "p.onnx", "--provider", "cpu", "--ratio", "0.3")
    assert pruned.validation["provider"] == pruned.revalidation["provider"] == "CPUExecutionProvider"
