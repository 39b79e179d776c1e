"""validate --oracle on plans: the plan JSON names each group unambiguously (one weight split into several groups
included), records the analysis settings, and validate judges a mask-exact plan by the oracle and any other plan by
drift. Every prune here goes through ``prune_and_revalidate`` (validate --oracle must agree with prune)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

import onnxprune as op
from onnxprune.errors import OnnxPruneError, PruneError, ValidationError
from onnxprune.selection import Plan, PlanSettings
from onnxprune.validation.validate import check_file, resolve_plan, validate
from tests.support.checked import checked_prune
from tests.support.plan_check import prune_and_revalidate, run_cli
from tests.support.split_models import conv_split, qkv_sliced
from tests.support.tiny_models import classifier

SPLIT_MODELS = {"conv_split": (conv_split, "w", 0, 2), "qkv_sliced": (qkv_sliced, "wqkv", 1, 3)}


@pytest.fixture(params=sorted(SPLIT_MODELS))
def split_model(request, tmp_path):
    build, weight, axis, count = SPLIT_MODELS[request.param]
    path = tmp_path / f"{request.param}.onnx"
    onnx.save(build(), path)
    return str(path), weight, axis, count


def test_check_file(tmp_path):
    weight = np.random.default_rng(0).standard_normal((4, 6))
    good = tmp_path / "good.onnx"
    onnx.save(classifier(weight), good)
    check_file(good)
    bad = tmp_path / "bad.onnx"
    model = classifier(weight)
    model.graph.node[0].input[1] = "missing"
    onnx.save(model, bad)
    with pytest.raises(ValidationError, match="bad.onnx"):
        check_file(bad)


def test_plan_json_round_trip_and_oracle(exported_model, tmp_path):
    source = exported_model("resnet_basic", "torchscript", False)
    dg = op.analyse_model(source)
    groups = dg.prunable_groups()
    units = {groups[0].id: [0, 3], groups[2].id: list(range(0, groups[2].size, 2))}
    result = checked_prune(dg, units)
    pruned = tmp_path / "pruned.onnx"
    result.save(str(pruned))
    doc = Plan(groups=units).to_dict(dg)
    entry = doc["groups"][0]
    assert entry["root"] == {"tensor": groups[0].root.tensor, "axis": groups[0].root.axis}
    assert entry["removed"] == [0, 3] and any(m["tensor"] == groups[0].root.tensor for m in entry["members"])
    for name, item in doc["initializers"].items():
        for axis, kept in item["kept"].items():
            assert len(kept) == dg.tensors[name].shape[int(axis)] - len(result.removed[op.ChannelAxis(name, int(axis))])
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(doc))
    assert Plan.load(plan_path, op.analyse_model(source)).groups == {g: sorted(u) for g, u in units.items()}
    for plan in (str(plan_path), doc, units, Plan(groups=units), Plan(groups=units).bind(dg)):
        report = validate(source, pruned, plan=plan, oracle=True, provider="cpu")
        assert report.passed and report.oracle and report.exact, report.format()
    assert validate(source, pruned, plan=units, oracle=True, atol=0.0).max_abs_diff <= 1e-6
    # pruned with other units than the plan says: the oracle must fail
    other = tmp_path / "other.onnx"
    checked_prune(dg, {groups[0].id: [1, 2], groups[2].id: units[groups[2].id]}).save(str(other))
    assert not validate(source, other, plan=doc, oracle=True).passed


def test_one_weight_split_into_several_groups_is_validated_group_by_group(split_model, tmp_path):
    """The groups of a split weight share a root (w[axis 0] / wqkv[axis 1]); plans used to name groups by root
    alone, so the entries overwrote each other and validate compared with the wrong masked model."""
    path, weight, axis, count = split_model
    dg = op.analyse_model(path)
    same_root = [g for g in dg.prunable_groups() if (g.root.tensor, g.root.axis) == (weight, axis)]
    assert len(same_root) == count
    units = {g.id: [k, k + 1] for k, g in enumerate(same_root)}  # different units in every group
    pruned = tmp_path / "pruned.onnx"
    checked_prune(dg, units).save(str(pruned))
    doc = Plan(groups=units).to_dict(dg)
    assert len({g["signature"] for g in doc["groups"]}) == count
    again = Plan.from_dict(json.loads(json.dumps(doc)), op.analyse_model(path))
    assert again.groups == units and again.exact
    report = validate(path, pruned, plan=doc, oracle=True)
    assert report.passed and report.oracle, report.format()
    legacy = {k: v for k, v in doc.items() if k != "schema_version"}  # a plan written before signatures
    with pytest.raises(PruneError, match=f"the model has {count} groups with that root"):
        Plan.from_dict(legacy, op.analyse_model(path))
    # through the command line, with the units the criterion picks
    result = prune_and_revalidate(path, tmp_path / "cli.onnx", "--ratio", "0.5")
    assert result.result.exit_code == 0 and result.revalidation["passed"] and result.revalidation["oracle"]
    roots = [(g["root"]["tensor"], g["root"]["axis"]) for g in result.plan["groups"]]
    assert roots.count((weight, axis)) == count


def test_a_plan_entry_that_matches_no_group_names_it(split_model, exported_model):
    path, weight, axis, _ = split_model
    dg = op.analyse_model(path)
    gid = dg.group_of(weight, axis)[0].id
    doc = Plan(groups={gid: [0]}).to_dict(dg)
    tampered = json.loads(json.dumps(doc))
    tampered["groups"][0]["signature"] = "0" * 16
    with pytest.raises(PruneError, match=rf"plan group {gid} \(root tensor '{weight}' axis {axis}.*differ"):
        Plan.from_dict(tampered, op.analyse_model(path))
    with pytest.raises(PruneError, match="no group has that root"):
        Plan.from_dict(doc, op.analyse_model(exported_model("resnet_basic", "torchscript", False)))
    twice = json.loads(json.dumps(doc))
    twice["groups"].append(twice["groups"][0])
    with pytest.raises(PruneError, match="an earlier entry of the plan matched too"):
        Plan.from_dict(twice, op.analyse_model(path))
    out_of_range = json.loads(json.dumps(doc))
    out_of_range["groups"][0]["removed"] = [99]
    with pytest.raises(PruneError, match=r"must be distinct and in \[0, "):
        Plan.from_dict(out_of_range, op.analyse_model(path))


def test_heads_ratio_plan_needs_its_own_settings(exported_model, tmp_path):
    """A --heads-ratio plan names groups of the 'leading' analysis: with the defaults they do not exist."""
    bert = exported_model("bert_encoder", "torchscript", True)
    pruned = prune_and_revalidate(bert, tmp_path / "bert.onnx", "--heads-ratio", "0.5", "--no-hidden")
    assert pruned.result.exit_code == 0 and pruned.revalidation["oracle"] and pruned.revalidation["passed"]
    plan = pruned.plan
    assert Plan.settings_of(plan) == PlanSettings(factor_policy="leading", heads_ratio=0.5, no_hidden=True)
    with pytest.raises(PruneError, match="matches no group of the model"):
        Plan.from_dict(plan, op.analyse_model(bert))  # analysed with the default factor policy
    bound = resolve_plan(bert, plan)
    assert bound.settings.factor_policy == "leading" and bound.exact
    assert all("heads" in g.labels for g in bound.pruned_groups() if g.size == 4)


def test_non_exact_plan_is_judged_by_drift_through_the_api(exported_model, tmp_path):
    bert = exported_model("bert_encoder", "torchscript", True)
    pruned = prune_and_revalidate(bert, tmp_path / "bert.onnx", "--ratio", "0.25", "--max-drift", "2")
    plan_path = tmp_path / "bert.plan.json"
    assert not pruned.plan["exact"] and any(not g["exact"] for g in pruned.plan["groups"])
    report = validate(bert, tmp_path / "bert.onnx", plan=str(plan_path), oracle=True, max_drift=2)
    assert report.passed and not report.oracle and report.exact is False and report.drift > 0
    assert report.note.startswith("not oracle-checkable: 1 of ") and "LayerNormalization" in report.note
    strict = validate(bert, tmp_path / "bert.onnx", plan=str(plan_path), oracle=True, max_drift=report.drift / 2)
    assert not strict.passed and strict.drift == pytest.approx(report.drift)


def test_group_signatures_do_not_depend_on_the_hash_seed(exported_model):
    """Signatures must be the same in every process, whatever order Python's sets and dicts of strings take."""
    bert = exported_model("bert_encoder", "torchscript", True)
    code = ("import sys, onnxprune as op; from onnxprune.selection import group_signature; "
            "dg = op.analyse_model(sys.argv[1], options=op.AnalysisOptions(factor_policy='leading')); "
            "print([(g.id, group_signature(g)) for g in dg.channel_groups()])")
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outputs.add(subprocess.run([sys.executable, "-c", code, bert], env=env, capture_output=True, text=True,
                                   check=True).stdout)
    assert len(outputs) == 1 and "[(0, '" in outputs.pop()


def test_unreadable_or_foreign_plans_are_clear_errors(tmp_path, exported_model):
    resnet = exported_model("resnet_basic", "torchscript", False)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(OnnxPruneError, match="cannot read plan"):
        validate(resnet, resnet, plan=str(bad), oracle=True)
    bad.write_text(json.dumps({"schema_version": 99, "groups": []}))
    with pytest.raises(OnnxPruneError, match="schema_version 99"):
        validate(resnet, resnet, plan=str(bad), oracle=True)
    result = run_cli("validate", resnet, resnet, "--plan", bad, "--oracle")
    assert result.exit_code == 2 and result.stderr.startswith("onnxprune: error: plan")
