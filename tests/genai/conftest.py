"""Session cache of the builder's conversions (each takes ~20 s on 2 cores)."""

from __future__ import annotations

import pytest

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
