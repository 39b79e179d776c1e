"""Attention structure beyond whole heads: head_dim positions (the same in every head; with rotary embeddings j
and j + head_dim/2 together), grouped-query attention pruned within KV groups, how groups are named, and
``prune_file`` with heads_ratio / no_hidden."""

from __future__ import annotations

import json

import numpy as np
import pytest

import onnxprune as op
from onnxprune import models
from onnxprune.axes import ChannelAxis
from onnxprune.pipeline import PruneOptions, prune_file
from onnxprune.runtime import make_session, random_inputs
from onnxprune.selection import is_heads, is_hidden
from onnxprune.validation.oracle import compare
from tests.support import transformer_check as tc
from tests.support.checked import checked_prune

pytest.importorskip("transformers")


@pytest.mark.parametrize("name", ["vit", "bert_encoder", "gpt_decoder", "llama_decoder", "hf_llama"])
def test_head_dim_positions_match_the_oracle(exported_model, name):
    spec = models.ZOO[name]
    dg = tc.analyse(exported_model(name, "torchscript", True), spec, "largest")
    head_dim = [g for g in dg.prunable_groups() if "head_dim" in g.labels]
    rotary = spec.extra["swiglu"]  # the LLaMA models: q and k head_dim positions pair up through rotate_half
    hd, layers = spec.extra["head_dim"], spec.extra["layers"]
    if rotary:  # and the rotary cos/sin tables, computed once, tie the q/k positions of every layer together
        assert sorted(g.size for g in head_dim) == [hd // 2] + [hd] * layers
    else:  # per layer: q/k positions (the scores' contraction), v/output-projection positions
        assert sorted(g.size for g in head_dim) == [hd] * 2 * layers
    assert all(g.exact and not is_heads(g) and g.unit_name() == "head_dim positions" for g in head_dim)
    if rotary:
        qk = [g for g in head_dim if g.size == hd // 2][0]
        weight = next(ax for ax in qk.constants() if ax.axis == 1 and "q" in ax.tensor.split("/")[-2])
        table = qk.members[weight]
        heads = spec.extra["heads"]
        for j, row in enumerate(table):  # unit j: position j and j + hd/2 of every query head
            assert sorted(row.tolist()) == sorted(h * hd + p for h in range(heads) for p in (j, j + hd // 2))
    plan = {g.id: list(range(0, g.size, 2)) for g in head_dim}
    result = checked_prune(dg, plan)
    tc.run_oracle(dg, plan, result.model, spec)


@pytest.mark.parametrize("name,exporter", [("llama_decoder", "torchscript"),
                                           pytest.param("llama_decoder", "dynamo", marks=pytest.mark.slow),
                                           ("hf_llama", "dynamo")])
def test_gqa_query_heads_within_kv_groups(exported_model, tmp_path, name, exporter):
    """repeat_policy 'trailing': the unit is a query-head position inside every KV group; every KV head stays."""
    spec = models.ZOO[name]
    path = exported_model(name, exporter, exporter == "torchscript")
    dg = tc.analyse(path, spec, "leading", repeat_policy="trailing")
    n_rep = spec.extra["heads"] // spec.extra["kv_heads"]
    heads = [g for g in dg.prunable_groups() if is_heads(g)]
    assert [g.size for g in heads] == [n_rep] * spec.extra["layers"]
    plan = {g.id: [0] for g in heads}
    result = checked_prune(dg, plan)
    tc.run_oracle(dg, plan, result.model, spec)
    before, after = tc.static_stats(path, spec), tc.static_stats(result.model, spec)
    d, hd, kv = spec.extra["hidden"], spec.extra["head_dim"], spec.extra["kv_heads"]
    seq, layers = 12, spec.extra["layers"]
    # per layer: kv query heads go (one per KV group): their q rows and o columns, and their attention products
    assert before[0] - after[0] == layers * kv * hd * 2 * d
    assert before[1] - after[1] == layers * kv * (2 * seq * d * hd + 2 * seq * seq * hd)
    if spec.extra["ctor"] is not None:
        native = tc.native_smaller(spec, exporter, tmp_path, heads=spec.extra["heads"] - kv, kv_heads=kv)
        assert tc.weight_shapes(result.model) == tc.weight_shapes(native)


def test_gqa_within_groups_on_transformers_repeat_kv(exported_model):
    """transformers' repeat_kv under TorchScript reshapes to Shape(k)[1] * n_rep: once the loader has folded it
    (static kv-head count), removing query heads within KV groups rewrites n_rep's product as a constant, matches
    the mask oracle and runs at other batch sizes and sequence lengths."""
    spec = models.ZOO["hf_llama"]
    dg = tc.analyse(exported_model("hf_llama", "torchscript", True), spec, "leading", repeat_policy="trailing")
    group = next(g for g in dg.prunable_groups() if is_heads(g))
    result = op.prune_group(group, [0])
    assert compare(op.masked_model(dg, {group.id: [0]}), result.model).passed
    session = make_session(result.model)
    for batch, tokens in ((1, 5), (3, 9)):
        feeds = random_inputs(session, batch=batch, dims={"sequence": tokens, "seq": tokens})
        assert session.run(None, feeds)[0].shape[:2] == (batch, tokens)


def test_groups_are_named(exported_model):
    spec = models.ZOO["bert_encoder"]
    path = exported_model("bert_encoder", "torchscript", True)
    leading, largest = tc.analyse(path, spec, "leading"), tc.analyse(path, spec, "largest")
    heads = [g for g in leading.channel_groups() if is_heads(g)]
    assert len(heads) == 2 and all(g.size == 4 and "4 heads" in g.details() for g in heads)
    assert all("heads" in g.to_dict()["labels"] for g in heads)
    assert [sorted(g.labels) for g in largest.channel_groups() if "head_dim" in g.labels] == [["head_dim"]] * 4
    hidden = [g for g in leading.channel_groups() if is_hidden(g)]
    assert len(hidden) == 1 and hidden[0].size == 32 and not hidden[0].exact
    assert ChannelAxis("tok.weight", 1) in hidden[0].members


@pytest.mark.parametrize("no_hidden", [True, False])
def test_prune_file_heads_ratio(exported_model, tmp_path, no_hidden):
    spec = models.ZOO["gpt_decoder"]
    src = exported_model("gpt_decoder", "torchscript", True)
    out, report_path = tmp_path / "pruned.onnx", tmp_path / "report.json"
    report = prune_file(src, out, PruneOptions(ratio=0.25, heads_ratio=0.5, no_hidden=no_hidden),
                        report_path=str(report_path))
    assert json.loads(report_path.read_text())["groups"]["pruned"] == report["groups"]["pruned"]
    # heads (2 layers) + MLP (2 layers) [+ the hidden group]
    assert report["groups"]["pruned"] == 4 + (not no_hidden)
    validation = report["validation"]  # the hidden group is not mask-exact: judged by drift, which may fail
    assert validation["oracle"] == no_hidden and (validation["passed"] is True if no_hidden else
                                                  validation["criterion"] == "drift" and validation["drift"] > 0)
    dg = tc.analyse(str(out), spec, "leading")
    assert sorted(g.size for g in dg.channel_groups() if is_heads(g)) == [2, 2]
    assert sorted(g.size for g in dg.channel_groups() if g.size in (48, 64)) == [48, 48]
    for batch, seq in tc.shapes_to_test(spec):
        from onnxprune.runtime import make_session

        (logits,) = make_session(str(out), "cpu").run(None, tc.feeds(spec, batch, seq))
        assert logits.shape == (batch, seq, 100) and np.all(np.isfinite(logits))


def test_selection_heads_ratio_no_hidden_and_round_to(exported_model):
    from onnxprune.scoring.importance import compute_importance
    from onnxprune.selection import SelectionOptions, select

    spec = models.ZOO["bert_encoder"]
    dg = tc.analyse(exported_model("bert_encoder", "torchscript", True), spec, "leading")
    scores = compute_importance(dg)

    def removed(**options):
        plan = select(dg, scores, SelectionOptions(**options))
        return sorted((sorted(dg.group(g).labels), dg.group(g).size, len(u)) for g, u in plan.items())

    heads, hidden = (["heads"], 4), (["normalized"], 32)
    assert removed(ratio=0.5, heads_ratio=0.25) == sorted([(*heads, 1)] * 2 + [([], 64, 32)] * 2 + [([], 32, 16)]
                                                          + [(*hidden, 16)])
    assert removed(ratio=0.5, heads_ratio=0.0, no_hidden=True) == sorted([([], 64, 32)] * 2 + [([], 32, 16)])
    # round_to counts channels: head groups (4 heads of 8 channels) are not rounded to 8 heads
    assert (*heads, 2) in removed(ratio=0.5, heads_ratio=0.5, round_to=8)
    with pytest.raises(ValueError, match="heads_ratio"):
        SelectionOptions(heads_ratio=1.0)
