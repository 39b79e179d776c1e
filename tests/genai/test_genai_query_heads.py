"""Query heads inside KV groups on the Qwen2-style GQA decoder built by onnxruntime-genai's builder (4 query heads,
2 KV heads, head size 16): ``prune --query-heads-ratio 0.5``, alone and after KV groups (``--heads-ratio 0.5``) in
one command; each pass equals its own mask oracle, the runtime config states the new head counts and the output
directory generates in onnxruntime-genai."""

from __future__ import annotations

import json

import onnx
import pytest
from click.testing import CliRunner

import onnxprune
from onnxprune.cli import main
from onnxprune.genai import cache_io_axes, compare_decoder
from onnxprune.genai.decoder import head_size_of
from onnxprune.validation.oracle import masked_model
from tests.genai.builders import VOCAB
from tests.genai.test_genai_models import _generate


def _heads(model: onnx.ModelProto) -> set[tuple[int, int]]:
    """{(num_heads, kv_num_heads)} over the GroupQueryAttention nodes."""
    found = set()
    for node in model.graph.node:
        if node.op_type == "GroupQueryAttention":
            attrs = {a.name: a.i for a in node.attribute}
            found.add((attrs["num_heads"], attrs["kv_num_heads"]))
    return found


@pytest.mark.parametrize("heads_ratio,expected", [
    pytest.param(None, (2, 2), marks=pytest.mark.slow),  # one query head of each KV group; both KV heads stay
    (0.5, (1, 1)),  # one KV group goes, then one of the two query heads of the other
])
def test_query_heads_within_kv_groups(genai_model, tmp_path, heads_ratio, expected):
    src = genai_model("qwen2", "fp32")
    assert _heads(onnx.load(str(src), load_external_data=False)) == {(4, 2)}
    out = tmp_path / "model.onnx"
    args = ["prune", str(src), str(out), "--ratio", "0.25", "--no-hidden", "--query-heads-ratio", "0.5",
            "--report", str(tmp_path / "report.json"), "--plan", str(tmp_path / "plan.json")]
    result = CliRunner().invoke(main, args + (["--heads-ratio", str(heads_ratio)] if heads_ratio else []))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    first, second = report["passes"]
    assert first["head_units_removed"] == (2 if heads_ratio else 0)  # one KV group in each of the 2 layers
    assert second["attention_units"] == "query_heads" and second["head_units_removed"] == (2 if heads_ratio else 4)
    for step in (first, second):
        assert step["validation"]["passed"] and step["validation"]["oracle"], step
    assert (tmp_path / "plan.pass2.json").is_file()
    pruned = onnx.load(str(out), load_external_data=False)
    assert _heads(pruned) == {expected}
    config = json.loads((tmp_path / "genai_config.json").read_text())["model"]["decoder"]
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_size"]) == (*expected, 16)
    tokens = _generate(tmp_path)  # greedy, until 30 tokens or the end-of-sequence token (id 2)
    assert (len(tokens) == 30 or tokens[-1] == 2) and all(0 <= t < VOCAB for t in tokens), tokens


def test_second_pass_equals_its_oracle_in_python(genai_model, tmp_path):
    """The same in Python: the final file equals the query-head pass's mask oracle, and differs from the original."""
    src = genai_model("qwen2", "fp32")
    pruned = onnxprune.prune(str(src), ratio=0.0, heads_ratio=0.5, query_heads_ratio=0.5, no_hidden=True,
                             validate=False, allowed_io_axes=tuple(cache_io_axes(src)))
    out = tmp_path / "model.onnx"
    pruned.save(out)
    first, second = pruned.passes
    assert second.plan is pruned.plan and second.plan.settings.attention_units == "query_heads"
    assert all(len(dg_units) == 1 for dg_units in second.plan.groups.values())  # the KV group left has 2: 1 goes
    head_size = head_size_of(onnx.load(str(src), load_external_data=False))
    oracle = compare_decoder(masked_model(second.plan.depgraph, second.plan.groups), str(out), head_size, VOCAB)
    assert oracle.passed, oracle.format()
    drift = compare_decoder(str(src), str(out), head_size, VOCAB, oracle=False)
    assert drift.max_abs_diff > 0
