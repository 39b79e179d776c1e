"""Perplexity of builder decoders before and after pruning (KV groups and MLP width), with and without
reconstruction, computed in onnxruntime with teacher forcing over windows of a shipped text, each run with an empty
KV cache. The text (tests/genai/data/prose.txt, ~4 KB) is public-domain prose: the Gettysburg Address, Genesis 1:1-19
(King James Version) and the Preamble of the US Constitution, typed in for these tests."""

from __future__ import annotations

import numpy as np
import pytest

import onnxprune
from onnxprune.genai import cache_io_axes, perplexity
from onnxprune.genai.decoder import head_size_of
from tests.genai.builders import PROSE, VOCAB, build, encode, save_trained_llama

WINDOW = 64


def _calibration(ids: np.ndarray, heads: int, head_size: int) -> dict[str, np.ndarray]:
    """Decoder feeds for the windows of ``ids`` (one sample per window): input ids, mask, empty caches."""
    batch = ids[: len(ids) // WINDOW * WINDOW].reshape(-1, WINDOW)
    feeds = {"input_ids": batch, "attention_mask": np.ones_like(batch)}
    for layer in range(2):
        for kind in ("key", "value"):
            feeds[f"past_key_values.{layer}.{kind}"] = np.zeros((len(batch), heads, 0, head_size), np.float32)
    return feeds


def _perplexities(src, fit: np.ndarray, held: np.ndarray) -> dict[str, float]:
    """Held-out perplexity of the original, the pruned (heads 0.5 of KV groups, MLP 0.25) and the pruned +
    reconstructed decoder (calibration: windows of ``fit``)."""
    import onnx

    head_size = head_size_of(onnx.load(str(src), load_external_data=False))
    options = dict(ratio=0.25, heads_ratio=0.5, no_hidden=True, allowed_io_axes=tuple(cache_io_axes(src)))
    pruned = onnxprune.prune(str(src), **options)
    assert pruned.validation["passed"] and pruned.validation["oracle"], pruned.validation
    refit = onnxprune.prune(str(src), calib=_calibration(fit, 2, head_size), calib_holdout=0.2, **options)
    assert refit.report["reconstruction"]
    return {"original": perplexity(str(src), held, head_size, WINDOW),
            "pruned": perplexity(pruned.result.exported, held, head_size, WINDOW),
            "reconstructed": perplexity(refit.result.exported, held, head_size, WINDOW)}


def test_perplexity_drift_on_random_decoder(genai_model):
    """On a random-config model perplexity means nothing about language: here it is only a drift measure (the
    original sits near the uniform VOCAB, pruning moves it; reconstruction is run end to end and measured)."""
    ids = np.random.default_rng(0).integers(4, VOCAB, size=12 * WINDOW)
    found = _perplexities(genai_model("llama", "fp32"), ids[: 8 * WINDOW], ids[8 * WINDOW:])
    assert 0.5 * VOCAB < found["original"] < 2 * VOCAB, found
    assert found["pruned"] != pytest.approx(found["original"], rel=1e-6), found
    assert np.isfinite(found["reconstructed"]), found


@pytest.mark.slow
def test_perplexity_of_trained_decoder(tmp_path):
    """A character-level Llama trained on 80% of the text (~1 min on 2 cores), held-out perplexity on the rest:
    the original has learned (far below the uniform VOCAB), pruning heads and MLP width costs perplexity, and
    reconstruction on the training windows gives part of it back."""
    pytest.importorskip("onnxruntime_genai")
    text = PROSE.read_text()
    src = build(save_trained_llama(tmp_path / "hf", text, steps=100), tmp_path / "onnx", "fp32")
    ids, cut = encode(text), int(len(text) * 0.8)
    found = _perplexities(src, ids[:cut], ids[cut:])
    print(found)
    assert found["original"] < VOCAB / 3, found
    assert found["pruned"] > found["original"], found
    assert found["reconstructed"] < found["pruned"], found
