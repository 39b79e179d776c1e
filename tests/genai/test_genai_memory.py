"""Validation of a pruned decoder with the reference (the mask oracle) run a part at a time, as big decoders are
(``onnxprune.runtime.parts.PART_ABOVE``, lowered here to 0): it still passes a correct prune with the same figures
and still fails a broken one."""

from __future__ import annotations

from click.testing import CliRunner

import onnxprune.pipeline as pipeline
from onnxprune.cli import main
from onnxprune.genai import cache_io_axes

ARGS = ["--heads-ratio", "0.5", "--ratio", "0.25", "--no-hidden"]


def test_reference_in_parts_passes_a_correct_prune(genai_model, tmp_path, monkeypatch):
    src = genai_model("llama", "fp32")
    whole = pipeline.prune_file(src, tmp_path / "whole.onnx", _options(src))["validation"]
    monkeypatch.setattr("onnxprune.runtime.parts.PART_ABOVE", 0)
    parted = pipeline.prune_file(src, tmp_path / "parted.onnx", _options(src))["validation"]
    assert parted["passed"] and parted["oracle"], parted
    assert "reference run in" in parted["inputs"] and "reference run in" not in whole["inputs"]
    assert parted["max_abs_diff"] == whole["max_abs_diff"]  # the same kernels on the same nodes: the same logits


def test_reference_in_parts_fails_a_broken_prune(genai_model, tmp_path, monkeypatch, broken_apply):
    monkeypatch.setattr("onnxprune.runtime.parts.PART_ABOVE", 0)
    done = CliRunner().invoke(main, ["prune", str(genai_model("llama", "fp32")), str(tmp_path / "m.onnx"), *ARGS])
    assert done.exit_code == 1, done.output
    assert "validation: FAILED (mask oracle" in done.output and "reference run in" in done.output


def _options(src) -> pipeline.PruneOptions:
    return pipeline.PruneOptions(ratio=0.25, heads_ratio=0.5, no_hidden=True,
                                 allowed_io_axes=tuple(sorted(cache_io_axes(src))))
