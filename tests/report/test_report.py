"""Reports: the per-group, per-layer and per-stage tables agree with the pruned model they describe (widths with the
sliced initializers, sums with count_macs/count_params), the HTML page is self-contained and holds every layer and
every blocked reason, and the ``report`` command turns a saved JSON into that page."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import onnx_graphsurgeon as gs
import pytest
from click.testing import CliRunner

from onnxprune.analysis import AnalysisOptions, analyse_model
from onnxprune.analysis.stats import count_macs, count_params
from onnxprune.apply import apply_plan
from onnxprune.report import SCHEMA_VERSION, format_groups_table, render_html, report_tables
from onnxprune.report.command import report as report_command
from onnxprune.report.tables import module_path, node_macs, stage_names, stage_of
from onnxprune.search import plan_pruning
from onnxprune.selection import SelectionOptions

LATENCY = {"provider": "CPUExecutionProvider", "batch": 1, "runs": 20, "warmup": 5, "threads": 0,
           "models": [{"path": "a.onnx", "median_ms": 2.0, "p90_ms": 2.2, "min_ms": 1.9, "std_ms": 0.1},
                      {"path": "b.onnx", "median_ms": 1.0, "p90_ms": 1.1, "min_ms": 0.9, "std_ms": 0.05}],
           "speedup": 2.0, "paired_speedup": 2.0, "other_load": None, "spinning": True}


class Built:
    """An analysed model, its plan, the pruned graph and the full report dict (pipeline keys + tables)."""

    def __init__(self, path: str, heads_ratio: float | None):
        policy = "leading" if heads_ratio is not None else "largest"
        self.dg = analyse_model(path, options=AnalysisOptions(factor_policy=policy))
        plan = plan_pruning(self.dg, "l2", SelectionOptions(ratio=0.5, heads_ratio=heads_ratio))
        self.plan = plan.groups
        self.pruned = apply_plan(self.dg, self.plan).graph
        self.report = {
            "input": path, "output": "pruned.onnx", "criterion": plan.criterion, "ratio": plan.ratio,
            "macs": {"before": count_macs(self.dg.graph), "after": count_macs(self.pruned)},
            "params": {"before": count_params(self.dg.graph), "after": count_params(self.pruned)},
            "groups": {"total": len(self.dg.channel_groups()), "pruned": len(self.plan),
                       "blocked": len(self.dg.channel_groups()) - len(self.dg.prunable_groups())},
            "channels_removed": sum(len(u) for u in self.plan.values()),
            "validation": {"passed": True, "max_abs_diff": 1e-7, "oracle": True, "tolerance": 1e-4},
            "notes": [], "seconds": 0.1,
            **report_tables(self.dg, self.plan, self.pruned)}


@pytest.fixture(scope="module")
def resnet(exported_model):
    return Built(exported_model("resnet_basic", "torchscript", False), None)


@pytest.fixture(scope="module")
def bert(exported_model):
    return Built(exported_model("bert_encoder", "torchscript", True), 0.5)


@pytest.fixture(params=["resnet", "bert"])
def built(request):
    return request.getfixturevalue(request.param)


def test_keys_are_stable_and_json_ready(built):
    report = built.report
    assert report["schema_version"] == SCHEMA_VERSION
    assert json.loads(json.dumps(report)) == report
    assert set(report["groups_table"][0]) == {"id", "root", "layer", "kind", "status", "width", "macs", "exact"}
    assert set(report["layers"][0]) == {"depth", "name", "op", "module", "stage", "weight", "width", "macs",
                                        "params"}
    assert set(report["stages"][0]) == {"name", "nodes", "layers", "macs", "params"}
    assert set(report["blocked"][0]) == {"id", "root", "layer", "kind", "width", "reasons"}


def test_group_widths_match_the_pruned_initializers(built):
    """For every constant member axis wholly owned by a group, the pruned initializer keeps after * k indices."""
    pruned = built.pruned.tensors()
    checked = 0
    for row in built.report["groups_table"]:
        group = built.dg.group(row["id"])
        assert row["width"]["before"] == group.size
        assert row["width"]["after"] == group.size - len(built.plan.get(group.id, []))
        assert row["status"] == ("blocked" if not group.prunable else "pruned" if group.id in built.plan else "kept")
        for axis in group.constants():
            k = group.members[axis].shape[1]
            original = built.dg.tensors[axis.tensor]
            if original.shape[axis.axis] == group.size * k and len(original.shape) >= 2:
                assert pruned[axis.tensor].shape[axis.axis] == row["width"]["after"] * k, (row, axis)
                checked += 1
    assert checked >= len(built.report["groups_table"])


def test_group_kinds(resnet, bert):
    assert {r["kind"] for r in resnet.report["groups_table"]} == {"channels"}
    kinds = [r["kind"] for r in bert.report["groups_table"]]
    assert kinds.count("heads") == 2 and kinds.count("hidden") == 1  # 2 layers of 4 heads; one residual width
    heads = [r for r in bert.report["groups_table"] if r["kind"] == "heads"]
    assert all(r["width"] == {"before": 4, "after": 2} for r in heads)


def test_macs_share_is_the_sliced_layers_share(built):
    total = count_macs(built.dg.graph)
    for row in built.report["groups_table"]:
        group = built.dg.group(row["id"])
        nodes = {id(n): n for ax in group.constants() for n in built.dg.tensors[ax.tensor].outputs}
        assert row["macs"]["before"] == sum(node_macs(n) for n in nodes.values())
        assert row["macs"]["share"] == pytest.approx(row["macs"]["before"] / total, abs=1e-6)
        assert 0 <= row["macs"]["after"] <= row["macs"]["before"]
    first_conv = built.report["groups_table"][0]
    assert first_conv["macs"]["share"] > 0.1


def test_layers_follow_the_depth_with_the_pruned_shapes(built):
    layers = built.report["layers"]
    weighted = [n for n in built.dg.graph.nodes
                if any(isinstance(t, gs.Constant) and sum(d > 1 for d in t.shape) >= 2
                       and np.issubdtype(np.dtype(t.dtype), np.floating) for t in n.inputs)]
    assert [r["name"] for r in layers] == [n.name for n in weighted]
    assert [r["depth"] for r in layers] == list(range(len(layers)))
    pruned = {n.name: n for n in built.pruned.nodes}
    changed = 0
    for row in layers:
        out = pruned[row["name"]].outputs[0]
        axis = 1 if row["op"] == "Conv" else -1
        assert row["width"]["after"] == out.shape[axis]
        assert row["macs"]["after"] == node_macs(pruned[row["name"]])
        changed += row["width"]["after"] < row["width"]["before"]
    assert changed >= len(layers) // 2


def test_stages_add_up_to_the_model(built):
    stages = built.report["stages"]
    for key, count in (("macs", count_macs), ("params", count_params)):
        assert sum(s[key]["before"] for s in stages) == count(built.dg.graph)
        assert sum(s[key]["after"] for s in stages) == count(built.pruned)
    assert sum(s["nodes"] for s in stages) == len(built.dg.graph.nodes)
    assert sum(s["layers"] for s in stages) == len(built.report["layers"])


def test_stage_names(resnet, bert):
    assert [s["name"] for s in resnet.report["stages"]] == ["conv1", "layers.0", "layers.1", "layers.2", "fc"]
    names = [s["name"] for s in bert.report["stages"]]
    assert {"attn.0", "mlp.0", "attn.1", "mlp.1", "pooler", "head"} <= set(names)
    assert names.index("attn.0") < names.index("mlp.0") < names.index("attn.1") < names.index("mlp.1")


def test_same_stages_from_dynamo_weight_names(resnet, exported_model):
    dynamo = Built(exported_model("resnet_basic", "dynamo", False), None)
    assert [s["name"] for s in dynamo.report["stages"]] == [s["name"] for s in resnet.report["stages"]]


def _node(name: str, weight: str = "w") -> gs.Node:
    w = gs.Constant(weight, np.zeros((4, 4), np.float32))
    return gs.Node("MatMul", name, inputs=[gs.Variable("x"), w], outputs=[gs.Variable(f"{name}_out")])


def test_module_paths_and_stage_rules():
    assert module_path(_node("/layers/layers.1/downsample/downsample.0/Conv")) == ["layers", "1", "downsample", "0"]
    assert module_path(_node("/mlp.0/mlp.0.0/MatMul")) == ["mlp", "0", "0"]
    assert module_path(_node("node_MatMul_3", "encoder.layer.3.attention.self.query.weight")) == \
        "encoder.layer.3.attention.self.query".split(".")
    assert module_path(_node("node_MatMul_3", "onnx::MatMul_12")) == []
    assert stage_of("encoder.layer.3.attention.self.query".split(".")) == "encoder.layer.3"
    assert stage_of(["layer1", "0", "conv1"]) == "layer1"
    assert stage_of(["conv1"]) == "conv1" and stage_of([]) is None
    assert stage_of(["model", "embeddings", "word_embeddings"], root="model") == "model.embeddings"
    assert stage_of("model.encoder.layer.1.output.dense".split("."), root="model") == "model.encoder.layer.1"
    # 'ln1' recurs along the depth (a list of norms), so the numbered token decides there
    nodes = [_node(f"/{p}/MatMul", f"w{k}") for k, p in enumerate(["ln1.0", "attn.0", "ln1.1", "attn.1"])]
    assert stage_names(nodes) == ["ln1.0", "attn.0", "ln1.1", "attn.1"]


def test_flat_names_fall_back_to_quarters_of_the_depth():
    nodes = [_node(f"node_MatMul_{k}", f"val_{k}") for k in range(8)]
    assert stage_names(nodes) == [f"quarter {k // 2 + 1} of depth" for k in range(8)]


def test_terminal_table(built):
    text = format_groups_table(built.report)
    lines = text.splitlines()
    assert lines[0].startswith(f"groups: {len(built.plan)} pruned")
    rows = built.report["groups_table"]
    for row in rows:
        assert any(line.split()[:3] == [str(row["id"]), row["kind"], row["status"]] for line in lines), row
    for row in built.report["blocked"]:
        assert f"{row['reasons'][0]}" in text
    assert "\x1b" not in text
    short = format_groups_table(built.report, limit=2)
    assert f"{len(rows) - 2} more groups" in short


def test_html_is_self_contained_and_complete(built):
    page = render_html(built.report)
    lowered = page.lower()
    for forbidden in ("http://", "https://", "src=", "<script", "<link", "@import", "<image"):
        assert forbidden not in lowered, forbidden
    assert lowered.count("url(") == lowered.count("url(#")  # only references inside the page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    assert set(re.findall(r'url\(#([^)]+)\)', page)) <= set(ids)
    assert page.count("<svg") == 2  # layer widths; MACs and params per stage
    for row in built.report["layers"]:
        assert html.escape(row["name"]) in page
    for row in built.report["blocked"]:
        for reason in row["reasons"]:
            assert html.escape(reason) in page
    for stage in built.report["stages"]:
        assert html.escape(stage["name"]) in page
    assert "Latency" not in page


def test_html_shows_latency_when_measured(resnet):
    page = render_html({**resnet.report, "latency": LATENCY})
    assert "Latency" in page and "2.00x faster" in page


def test_html_of_an_old_report_without_tables(resnet):
    old = {k: v for k, v in resnet.report.items() if k not in ("groups_table", "layers", "stages", "blocked")}
    page = render_html(old)
    assert "No per-layer data" in page and "<svg" not in page


def test_report_command(resnet, tmp_path):
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(resnet.report))
    page = tmp_path / "report.html"
    result = CliRunner().invoke(report_command, [str(saved), "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert "groups:" in result.output and page.read_text().count("<svg") == 2
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = CliRunner().invoke(report_command, [str(broken)])
    assert result.exit_code != 0 and "is not JSON" in result.output
