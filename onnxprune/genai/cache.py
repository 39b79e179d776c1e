"""The KV cache of a decoder: graph inputs ``past_key_values.*`` and outputs ``present.*`` (or the names
``genai_config.json`` states) are fed back by the runtime, not by the user, so their head axis (axis 1 of
[batch, kv_heads, sequence, head_size]) may be pruned with the attention they feed."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import onnx

from onnxprune.axes import ChannelAxis

GENAI_CONFIG = "genai_config.json"
_DEFAULT_PATTERNS = (r"past_key_values\.\d+\.(key|value)", r"present\.\d+\.(key|value)",
                     r"past_(key|value)_\d+", r"present_(key|value)_\d+")


def genai_config_path(model_path: str | os.PathLike) -> Path | None:
    """The ``genai_config.json`` beside ``model_path``, or None."""
    path = Path(model_path).parent / GENAI_CONFIG
    return path if path.is_file() else None


def _patterns(config: Path | None) -> list[str]:
    """Regular expressions of the cache tensor names: from the config's ``%d`` templates, else the usual ones."""
    if config is None:
        return list(_DEFAULT_PATTERNS)
    decoder = json.loads(config.read_text()).get("model", {}).get("decoder", {})
    names = [*decoder.get("inputs", {}).items(), *decoder.get("outputs", {}).items()]
    templates = [v for k, v in names if k.startswith(("past_", "present_")) and isinstance(v, str)]
    return [re.escape(t).replace("%d", r"\d+") for t in templates] or list(_DEFAULT_PATTERNS)


def cache_io_axes(model_path: str | os.PathLike) -> set[ChannelAxis]:
    """The head axes (axis 1 of rank-4 tensors) of the KV-cache graph inputs and outputs of the model file."""
    model = onnx.load(os.fspath(model_path), load_external_data=False)
    patterns = [re.compile(p) for p in _patterns(genai_config_path(model_path))]
    found = set()
    for value in list(model.graph.input) + list(model.graph.output):
        if any(p.fullmatch(value.name) for p in patterns) and len(value.type.tensor_type.shape.dim) == 4:
            found.add(ChannelAxis(value.name, 1))
    return found
