"""A BERT-like encoder (transformers' BertModel from a small config, eager attention, torch.onnx export) run
through onnxruntime's transformer optimizer: fused Attention, SkipLayerNormalization, BiasGelu and
EmbedLayerNormalization. Heads and MLP width prune and match the mask oracle; the hidden width stays (no_hidden):
EmbedLayerNormalization has no handler yet, so groups through it are blocked, with that reason."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest

import onnxprune
from onnxprune.runtime import make_session


@pytest.fixture(scope="module")
def optimized_bert(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from onnxruntime.transformers.optimizer import optimize_model

    root = tmp_path_factory.mktemp("ort_bert")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=64)
    config._attn_implementation = "eager"  # the optimizer fuses the eager pattern into Attention, not SDPA's

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = transformers.BertModel(config).eval()

        def forward(self, ids, mask, types):
            out = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types)
            return out.last_hidden_state, out.pooler_output

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = (torch.randint(0, 100, (2, 16)), torch.ones(2, 16, dtype=torch.int64),
               torch.zeros(2, 16, dtype=torch.int64))
    torch.onnx.export(Encoder().eval(), example, str(root / "bert.onnx"), input_names=names,
                      output_names=["last_hidden_state", "pooler"], opset_version=17, dynamo=False,
                      dynamic_axes={k: {0: "batch", 1: "sequence"} for k in names})
    optimize_model(str(root / "bert.onnx"), model_type="bert", num_heads=4, hidden_size=64).save_model_to_file(
        str(root / "bert_opt.onnx"))
    return root / "bert_opt.onnx"


def test_heads_and_mlp_of_ort_optimized_bert(optimized_bert):
    ops = collections.Counter(n.op_type for n in onnx.load(str(optimized_bert)).graph.node)
    assert {"Attention", "SkipLayerNormalization", "BiasGelu", "EmbedLayerNormalization"} <= set(ops), ops
    rng = np.random.default_rng(0)  # real inputs: made-up ones do not know EmbedLayerNormalization's table sizes
    calib = {"input_ids": rng.integers(0, 100, (8, 16)), "attention_mask": np.ones((8, 16), np.int64),
             "token_type_ids": np.zeros((8, 16), np.int64)}
    pruned = onnxprune.prune(str(optimized_bert), heads_ratio=0.5, ratio=0.25, no_hidden=True, calib=calib,
                             reconstruct=False)
    assert pruned.validation["passed"] and pruned.validation["oracle"], pruned.validation
    heads = {a.i for n in pruned.model.graph.node if n.op_type == "Attention" for a in n.attribute
             if a.name == "num_heads"}
    assert heads == {2}
    assert pruned.params["after"] < pruned.params["before"]
    make_session(pruned.model, "cpu")
    dg = onnxprune.analyse_model(str(optimized_bert))
    assert any("EmbedLayerNormalization" in r for g in dg.channel_groups() for r in g.blocked_reasons)
