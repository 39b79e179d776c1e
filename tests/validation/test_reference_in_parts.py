"""The generic comparer runs a reference with its weights in a data file a part at a time once they exceed
``onnxprune.runtime.parts.PART_ABOVE`` (lowered here to 0): a correct prune of a model with external data still
passes against the mask oracle with the same figures, the report says the reference ran in parts, and a broken
prune still fails."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

import onnxprune.pipeline as pipeline
from tests.support.tiny_models import relu_mlp


@pytest.fixture
def mlp_with_data_file(tmp_path) -> str:
    """x -> 3 x (MatMul + Add + Relu) -> MatMul + Add, saved with every weight in model.onnx.data."""
    model = relu_mlp(64, 3, scale=0.2)
    path = str(tmp_path / "model.onnx")
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx.data",
              size_threshold=0)
    return path


def test_reference_in_parts_passes_a_correct_prune(mlp_with_data_file, tmp_path, monkeypatch):
    whole = pipeline.prune_file(mlp_with_data_file, tmp_path / "whole.onnx", pipeline.PruneOptions(ratio=0.5))
    monkeypatch.setattr("onnxprune.runtime.parts.PART_ABOVE", 0)
    parted = pipeline.prune_file(mlp_with_data_file, tmp_path / "parted.onnx", pipeline.PruneOptions(ratio=0.5))
    check = parted["validation"]
    assert check["passed"] and check["oracle"], check
    assert "reference run in" in check["note"] and "reference run in" not in whole["validation"]["note"]
    assert check["max_abs_diff"] == whole["validation"]["max_abs_diff"]


def test_reference_in_parts_fails_a_broken_prune(mlp_with_data_file, tmp_path, monkeypatch):
    real = pipeline.apply_plan

    def broken(dg, plan):
        result = real(dg, plan)
        weight = result.graph.tensors()["w1"]
        assert isinstance(weight, gs.Constant)
        weight.values = np.asarray(weight.values) * np.float32(1.5)
        return result

    monkeypatch.setattr(pipeline, "apply_plan", broken)
    monkeypatch.setattr("onnxprune.runtime.parts.PART_ABOVE", 0)
    check = pipeline.prune(mlp_with_data_file, ratio=0.5).report["validation"]
    assert check["passed"] is False and "reference run in" in check["note"], check
