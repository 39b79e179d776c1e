"""Decoders from onnxruntime-genai's builder: load, prune KV groups and MLP width with the cache I/O allowed, match
the mask oracle's logits, and generate with onnxruntime-genai from the output directory as it is."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import onnxprune
from onnxprune.genai import cache_io_axes, compare_decoder, rewrite_genai_dir
from onnxprune.genai.decoder import head_size_of
from onnxprune.validation.oracle import masked_model
from tests.genai.builders import VOCAB


def _generate(directory, steps: int = 30) -> list[int]:
    import onnxruntime_genai as og

    model = og.Model(str(directory))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=5 + steps, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array([[1, 5, 6, 7, 8]], dtype=np.int32))
    tokens = []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return tokens


def _prune_and_check(src, out_dir, heads_ratio: float, ratio: float):
    axes = cache_io_axes(src)
    assert {a.tensor for a in axes} >= {"past_key_values.0.key", "present.1.value"}
    pruned = onnxprune.prune(str(src), ratio=ratio, heads_ratio=heads_ratio, no_hidden=True, validate=False,
                             allowed_io_axes=tuple(axes))
    out = out_dir / "model.onnx"
    pruned.save(out)
    rewrite_genai_dir(src, out, pruned.model)
    original = onnx.load(str(src), load_external_data=False)
    head_size = head_size_of(original)
    oracle = compare_decoder(masked_model(pruned.plan.depgraph, pruned.plan.groups), str(out), head_size, VOCAB)
    drift = compare_decoder(str(src), str(out), head_size, VOCAB, oracle=False)
    return pruned, oracle, drift, json.loads((out_dir / "genai_config.json").read_text())["model"]["decoder"]


def test_llama_fp32_kv_groups_and_mlp(genai_model, tmp_path):
    src = genai_model("llama", "fp32")
    original = json.loads((src.parent / "genai_config.json").read_text())["model"]["decoder"]
    pruned, oracle, drift, config = _prune_and_check(src, tmp_path, heads_ratio=0.5, ratio=0.25)
    assert oracle.passed, oracle.format()
    assert drift.max_abs_diff > 0  # the pruned model is not the original: the oracle comparison sees something
    assert (original["num_attention_heads"], original["num_key_value_heads"]) == (4, 2)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_size"]) == (2, 1, 16)
    gqa = [n for n in pruned.model.graph.node if n.op_type == "GroupQueryAttention"]
    assert {(a.name, a.i) for n in gqa for a in n.attribute if a.name.endswith("num_heads")} == \
        {("num_heads", 2), ("kv_num_heads", 1)}
    assert (tmp_path / "tokenizer.json").is_file()
    tokens = _generate(tmp_path)
    assert len(tokens) == 30 and all(0 <= t < VOCAB for t in tokens)


def test_cache_io_protected_without_the_option(genai_model):
    dg = onnxprune.analyse_model(str(genai_model("llama", "fp32")))
    heads = [g for g in dg.groups if "heads" in g.labels]
    assert heads and all(not g.prunable for g in heads)
    assert any("past_key_values" in r for g in heads for r in g.blocked_reasons)


@pytest.mark.slow
@pytest.mark.parametrize("kind,precision", [("qwen2", "fp32"), ("phi3", "fp32"), ("llama", "int4")])
def test_other_decoders(genai_model, tmp_path, kind, precision):
    src = genai_model(kind, precision)
    pruned, oracle, _, config = _prune_and_check(src, tmp_path, heads_ratio=0.5, ratio=0.25)
    assert oracle.passed, oracle.format()
    assert config["num_key_value_heads"] == 1
    assert len(_generate(tmp_path)) == 30
