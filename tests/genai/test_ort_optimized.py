"""A BERT-like classifier (transformers' BertModel from a small config, eager attention, a linear head on the
pooler, torch.onnx export) run through onnxruntime's transformer optimizer: fused EmbedLayerNormalization,
Attention, SkipLayerNormalization and BiasGelu. Heads and MLP width prune and match the mask oracle; the hidden
width prunes through EmbedLayerNormalization's tables and every fused norm, judged by drift (not mask-exact).
Validation makes up its own inputs: ids below the embedding tables' rows."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest

import onnxprune
from onnxprune.runtime import make_session
from onnxprune.runtime.inputs import integer_bounds

VOCAB, TYPES, POSITIONS, HIDDEN = 100, 2, 64, 64


@pytest.fixture(scope="module")
def optimized_bert(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from onnxruntime.transformers.optimizer import optimize_model

    root = tmp_path_factory.mktemp("ort_bert")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=128,
                                     max_position_embeddings=POSITIONS, type_vocab_size=TYPES)
    config._attn_implementation = "eager"  # the optimizer fuses the eager pattern into Attention, not SDPA's

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = transformers.BertModel(config).eval()
            self.head = torch.nn.Linear(HIDDEN, 3)

        def forward(self, ids, mask, types):
            return self.head(self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).pooler_output)

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = (torch.randint(0, VOCAB, (2, 16)), torch.ones(2, 16, dtype=torch.int64),
               torch.zeros(2, 16, dtype=torch.int64))
    torch.onnx.export(Classifier().eval(), example, str(root / "bert.onnx"), input_names=names,
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={k: {0: "batch", 1: "sequence"} for k in names})
    optimize_model(str(root / "bert.onnx"), model_type="bert", num_heads=4, hidden_size=HIDDEN).save_model_to_file(
        str(root / "bert_opt.onnx"))
    return root / "bert_opt.onnx"


def _calib(n: int = 8) -> dict:
    rng = np.random.default_rng(0)
    return {"input_ids": rng.integers(0, VOCAB, (n, 16)), "attention_mask": np.ones((n, 16), np.int64),
            "token_type_ids": rng.integers(0, TYPES, (n, 16))}


def test_fused_ops_present_and_id_bounds(optimized_bert):
    model = onnx.load(str(optimized_bert))
    ops = collections.Counter(n.op_type for n in model.graph.node)
    assert {"Attention", "SkipLayerNormalization", "BiasGelu", "EmbedLayerNormalization"} <= set(ops), ops
    bounds = integer_bounds(model)
    assert bounds["input_ids"] == VOCAB and bounds["token_type_ids"] == TYPES, bounds


def test_heads_and_mlp_of_ort_optimized_bert(optimized_bert):
    pruned = onnxprune.prune(str(optimized_bert), heads_ratio=0.5, ratio=0.25, no_hidden=True, calib=_calib(),
                             reconstruct=False)
    assert pruned.validation["passed"] and pruned.validation["oracle"], pruned.validation
    heads = {a.i for n in pruned.model.graph.node if n.op_type == "Attention" for a in n.attribute
             if a.name == "num_heads"}
    assert heads == {2}
    assert pruned.params["after"] < pruned.params["before"]
    make_session(pruned.model, "cpu")


def test_hidden_width_through_embed_layer_norm(optimized_bert):
    dg = onnxprune.analyse_model(str(optimized_bert))
    hidden = [g for g in dg.channel_groups() if any("word_embeddings" in str(m) for m in g.details().splitlines())]
    assert hidden and not any(g.blocked_reasons for g in hidden), [g.blocked_reasons for g in hidden]
    # no calib: made-up inputs; random weights and a quarter of the hidden width gone: 1 of 16 top-1 flips is usual
    pruned = onnxprune.prune(str(optimized_bert), ratio=0.25, reconstruct=False, max_drift=0.25)
    check = pruned.validation
    assert check["passed"] and check["criterion"] == "drift" and "random" in check["inputs"], check
    assert check["cosine"] > 0.8, check
    model = pruned.model
    embed = next(n for n in model.graph.node if n.op_type == "EmbedLayerNormalization")
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    assert inits[embed.input[2]] == [VOCAB, HIDDEN * 3 // 4]  # word table: rows kept, hidden columns pruned
    assert inits[embed.input[4]] == [TYPES, HIDDEN * 3 // 4]
    assert inits[embed.input[5]] == [HIDDEN * 3 // 4]
    assert pruned.params["after"] < pruned.params["before"]
    make_session(model, "cpu").run(None, _calib(2))
