"""Session cache of the builder's conversions (each takes ~20 s on 2 cores)."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
import pytest

import onnxprune.pipeline as pipeline
from tests.genai.builders import build, save_hf_model

_CACHE: dict = {}


@pytest.fixture(scope="session")
def genai_model(tmp_path_factory):
    """genai_model(kind, precision) -> path of model.onnx built by onnxruntime-genai's builder (cached)."""
    pytest.importorskip("onnxruntime_genai")

    def get(kind: str, precision: str):
        key = (kind, precision)
        if key not in _CACHE:
            root = tmp_path_factory.mktemp(f"genai_{kind}_{precision}")
            _CACHE[key] = build(save_hf_model(kind, root / "hf"), root / "onnx", precision)
        return _CACHE[key]

    return get


@pytest.fixture
def broken_apply(monkeypatch):
    """``prune``'s apply patched to scale a kept MLP weight (a down_proj) of the pruned decoder by 1.5: a broken
    prune that validation must catch."""
    real = pipeline.apply_plan

    def broken(dg, plan):
        result = real(dg, plan)
        weight = next(t for name, t in result.graph.tensors().items()
                      if isinstance(t, gs.Constant) and "down_proj" in name and t.values.ndim == 2)
        weight.values = np.asarray(weight.values) * np.float32(1.5)
        return result

    monkeypatch.setattr(pipeline, "apply_plan", broken)
