"""Transformers end to end: the models/ ViT, BERT-style encoder, GPT-style decoder and LLaMA-style decoder, and
``transformers`` BertModel, ViTModel, GPT2Model and LlamaForCausalLM (random weights), exported by both exporters.

For each: heads 0.5 + MLP 0.5 (analysis policy 'leading', hidden size kept) and, separately, hidden size 0.5. The
pruned model passes the checker (``dg.prune`` runs it and builds an onnxruntime session) and runs at batch 1 and 3
and at 5 and 9 tokens (the export used 2 and 12; ViT's sequence is fixed by its image size); heads and MLP groups
equal the mask oracle there, hidden-size groups are reported not mask-exact and their drift is measured; params
and MACs (batch 1, 12 tokens) drop by what the removed structure costs: for models/ transformers exactly what the
same architecture built natively at the smaller sizes has, for ``transformers`` models a count from the
architecture. The default run covers every TorchScript export and the dynamo export of the models/ LLaMA; the
other dynamo exports, optimised (torch.onnx.export's default) and not, are marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune import models
from onnxprune.axes import ChannelAxis
from onnxprune.selection import is_heads, is_hidden
from tests.support import transformer_check as tc
from tests.support.checked import checked_prune

pytest.importorskip("transformers")

NAMES = models.names("transformer")
DEFAULT = [(n, "torchscript") for n in NAMES] + [("llama_decoder", "dynamo")]
SLOW = [(n, "dynamo") for n in NAMES if (n, "dynamo") not in DEFAULT] + [(n, "dynamo-unoptimised") for n in NAMES]
CASES = [pytest.param(n, e, id=f"{n}-{e}") for n, e in DEFAULT] + \
    [pytest.param(n, e, id=f"{n}-{e}", marks=pytest.mark.slow) for n, e in SLOW]


def _path(exported_model, name: str, exporter: str) -> str:
    # dynamo: the optimised export (ONNXProgram.optimize(), torch.onnx.export's default) or the raw program
    # ('dynamo-unoptimised'); TorchScript: constant folding off, so initializers keep torch's parameter names
    if exporter == "dynamo-unoptimised":
        return exported_model(name, "dynamo", True)
    return exported_model(name, exporter, exporter == "torchscript")


def _smaller_sizes(spec, kinds) -> dict:
    x = spec.extra
    sizes = {"heads": x["heads"] - kinds["heads"][0] * (x["heads"] // x["kv_heads"]), "mlp": x["mlp"] - kinds["mlp"][0]}
    if x["kv_heads"] != x["heads"]:
        sizes["kv_heads"] = x["kv_heads"] - kinds["heads"][0]
    if "pooler" in kinds:
        sizes["pooler"] = x["hidden"] - kinds["pooler"][0]
    return sizes


@pytest.mark.parametrize("name,exporter", CASES)
def test_heads_and_mlp(exported_model, tmp_path, record_property, name, exporter):
    spec = models.ZOO[name]
    path = _path(exported_model, name, exporter)
    dg = tc.analyse(path, spec, "leading")
    plan = tc.heads_mlp_plan(dg)
    kinds = tc.removed_units(dg, plan)
    layers, heads = spec.extra["layers"], spec.extra["kv_heads"]  # GQA: whole KV groups with their query heads
    assert kinds["heads"] == [heads // 2] * layers and kinds["mlp"] == [spec.extra["mlp"] // 2] * layers, kinds
    assert "hidden" not in kinds and all(dg.group(g).exact for g in plan)
    assert sum(is_heads(g) for g in dg.prunable_groups()) == layers
    result = checked_prune(dg, plan)
    record_property("oracle_max_abs_diff", tc.run_oracle(dg, plan, result.model, spec))
    before, after = tc.static_stats(path, spec), tc.static_stats(result.model, spec)
    expected = tc.structure_cost(spec, kinds, seq=12)
    assert (before[0] - after[0], before[1] - after[1]) == expected
    if spec.extra["ctor"] is not None:
        native = tc.native_smaller(spec, exporter.split("-")[0], tmp_path, **_smaller_sizes(spec, kinds))
        assert after == tc.static_stats(native, spec)
        assert tc.weight_shapes(result.model) == tc.weight_shapes(native)


@pytest.mark.parametrize("name,exporter", CASES)
def test_hidden_size(exported_model, tmp_path, record_property, name, exporter):
    spec = models.ZOO[name]
    path = _path(exported_model, name, exporter)
    dg = tc.analyse(path, spec, "largest", hidden_output=True)
    hidden = [g for g in dg.prunable_groups() if is_hidden(g)]
    assert len(hidden) == 1 and not hidden[0].exact
    assert any("normalis" in r or "ReduceMean" in r for r in hidden[0].inexact_reasons), hidden[0].inexact_reasons
    plan = tc.hidden_plan(dg)
    kinds = tc.removed_units(dg, plan)
    assert kinds == {"hidden": [spec.extra["hidden"] - tc.HIDDEN_KEPT]}
    result = checked_prune(dg, plan)
    removed_out = result.removed.get(ChannelAxis("output", 2), np.empty(0, dtype=np.int64))
    drift = tc.drift(dg, result.model, spec, removed_out)
    record_property("hidden_drift", drift)
    assert 0 < drift < np.inf
    before, after = tc.static_stats(path, spec), tc.static_stats(result.model, spec)
    if spec.extra["ctor"] is not None:
        native = tc.native_smaller(spec, exporter.split("-")[0], tmp_path, dim=tc.HIDDEN_KEPT)
        assert after == tc.static_stats(native, spec)
        assert tc.weight_shapes(result.model) == tc.weight_shapes(native)
    else:
        assert (before[0] - after[0], before[1] - after[1]) == tc.structure_cost(spec, kinds, seq=12)
