"""``prune`` validates a decoder whose KV-cache heads it pruned: the logits of random prompts run with empty caches
against the mask oracle (the generic comparer cannot feed both models alike, their cache shapes differ); a pruned
decoder broken on purpose fails and the command exits 1."""

from __future__ import annotations

from click.testing import CliRunner

from onnxprune.cli import main

ARGS = ["--heads-ratio", "0.5", "--ratio", "0.25", "--no-hidden"]


def test_prune_validates_cache_pruned_decoder(genai_model, tmp_path):
    src = genai_model("llama", "fp32")
    out = tmp_path / "model.onnx"
    done = CliRunner().invoke(main, ["prune", str(src), str(out), *ARGS])
    assert done.exit_code == 0, done.output
    assert "validation: PASSED (mask oracle" in done.output
    assert "skipped" not in done.output


def test_prune_fails_a_broken_decoder(genai_model, tmp_path, broken_apply):
    """A kept MLP weight of the pruned model scaled by 1.5 after apply: the oracle comparison must see it."""
    out = tmp_path / "model.onnx"
    done = CliRunner().invoke(main, ["prune", str(genai_model("llama", "fp32")), str(out), *ARGS])
    assert done.exit_code == 1, done.output
    assert "validation: FAILED (mask oracle" in done.output
    assert "does not match the mask oracle" in done.output
