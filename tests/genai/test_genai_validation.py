"""``prune`` validates a decoder whose KV-cache heads it pruned: the logits of random prompts run with empty caches
against the mask oracle (the generic comparer cannot feed both models alike, their cache shapes differ); a pruned
decoder broken on purpose fails and the command exits 1."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
from click.testing import CliRunner

import onnxprune.pipeline as pipeline
from onnxprune.cli import main

ARGS = ["--heads-ratio", "0.5", "--ratio", "0.25", "--no-hidden"]


def test_prune_validates_cache_pruned_decoder(genai_model, tmp_path):
    src = genai_model("llama", "fp32")
    out = tmp_path / "model.onnx"
    done = CliRunner().invoke(main, ["prune", str(src), str(out), *ARGS])
    assert done.exit_code == 0, done.output
    assert "validation: PASSED (mask oracle" in done.output
    assert "skipped" not in done.output


def test_prune_fails_a_broken_decoder(genai_model, tmp_path, monkeypatch):
    """A kept MLP weight of the pruned model scaled by 1.5 after apply: the oracle comparison must see it."""
    real = pipeline.apply_plan

    def broken(dg, plan):
        result = real(dg, plan)
        weight = next(t for name, t in result.graph.tensors().items()
                      if isinstance(t, gs.Constant) and "down_proj" in name and t.values.ndim == 2)
        weight.values = np.asarray(weight.values) * np.float32(1.5)
        return result

    monkeypatch.setattr(pipeline, "apply_plan", broken)
    out = tmp_path / "model.onnx"
    done = CliRunner().invoke(main, ["prune", str(genai_model("llama", "fp32")), str(out), *ARGS])
    assert done.exit_code == 1, done.output
    assert "validation: FAILED (mask oracle" in done.output
    assert "does not match the mask oracle" in done.output
