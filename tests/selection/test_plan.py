"""The Plan type: one JSON owner (schema_version 2, settings, group signatures), binding to an analysis,
mask-exactness, and the errors for plans that do not fit the model."""

from __future__ import annotations

import json

import pytest

import onnxprune as op
from onnxprune.analysis import AnalysisOptions
from onnxprune.errors import OnnxPruneError, PruneError
from onnxprune.search import plan_pruning
from onnxprune.selection import Plan, PlanSettings, SelectionOptions, group_signature
from onnxprune.selection.plan import SCHEMA_VERSION, read_plan_json
from tests.support.split_models import conv_split, qkv_sliced


@pytest.mark.parametrize("build", [conv_split, qkv_sliced])
def test_signatures_name_every_channel_group_once(build):
    dg = op.analyse_model(build())
    signatures = [group_signature(g) for g in dg.channel_groups()]
    assert len(set(signatures)) == len(signatures)
    assert signatures == [group_signature(g) for g in op.analyse_model(build()).channel_groups()]


def test_signatures_of_the_zoo_are_unique(exported_model):
    for name, policy in (("resnet_basic", "largest"), ("bert_encoder", "leading"), ("gpt_decoder", "largest")):
        dg = op.analyse_model(exported_model(name, "torchscript", True), options=AnalysisOptions(factor_policy=policy))
        signatures = [group_signature(g) for g in dg.channel_groups()]
        assert len(set(signatures)) == len(signatures), name


def test_to_dict_from_dict_round_trip_keeps_groups_settings_and_exactness():
    dg = op.analyse_model(qkv_sliced())
    settings = PlanSettings.of(dg, input_shapes={"x": [2, 7, 6]}, heads_ratio=None)
    plan = plan_pruning(dg, "l2", SelectionOptions(ratio=0.5)).bind(dg, settings)
    doc = json.loads(json.dumps(plan.to_dict()))
    assert doc["schema_version"] == SCHEMA_VERSION and doc["exact"] is plan.exact is True
    assert set(doc) >= {"criterion", "ratio", "settings", "groups", "initializers", "parameters", "notes"}
    assert doc["settings"]["input_shapes"] == {"x": [2, 7, 6]} and doc["settings"]["initializer_inputs"] == "protect"
    assert all({"id", "signature", "root", "size", "exact", "removed", "members"} <= set(g) for g in doc["groups"])
    again = Plan.from_dict(doc, Plan.settings_of(doc).analyse(qkv_sliced()))
    assert again.groups == plan.groups and again.settings == settings and again.criterion == "l2"
    assert again.to_dict() == doc


def test_settings_round_trip_and_refuse_unknown_keys():
    settings = PlanSettings(factor_policy="leading", repeat_policy="trailing", input_shapes={"a": [1, "seq"]},
                            initializer_inputs="prune", heads_ratio=0.25, no_hidden=True, protect_io=False,
                            allowed_io_axes=(op.ChannelAxis("y", 1),))
    assert PlanSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    options = settings.analysis_options()
    assert options.factor_policy == "leading" and options.allowed_io_axes == {op.ChannelAxis("y", 1)}
    with pytest.raises(OnnxPruneError, match="unknown keys"):
        PlanSettings.from_dict({"factor_policy": "leading", "colour": "red"})
    assert PlanSettings.from_dict({}) == PlanSettings()


def test_bind_checks_group_ids_and_units_and_exact_needs_an_analysis():
    dg = op.analyse_model(conv_split())
    group = dg.prunable_groups()[0]
    with pytest.raises(PruneError, match="not bound"):
        _ = Plan(groups={group.id: [0]}).exact
    assert Plan(groups={group.id: [0]}).bind(dg).exact
    with pytest.raises(PruneError, match="not a channel group"):
        Plan(groups={999: [0]}).bind(dg)
    with pytest.raises(PruneError, match=r"distinct and in \[0, 4\)"):
        Plan(groups={group.id: [4]}).bind(dg)


def test_read_plan_json_refuses_what_is_not_a_plan(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"groups": "none"}))
    with pytest.raises(OnnxPruneError, match="not a plan JSON"):
        read_plan_json(path)
    with pytest.raises(OnnxPruneError, match="cannot read plan"):
        read_plan_json(tmp_path / "missing.json")
