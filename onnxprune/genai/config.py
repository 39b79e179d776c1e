"""Rewrite ``genai_config.json`` for a pruned decoder and copy the tokenizer and processing files beside it, so the
output directory runs in onnxruntime-genai as it is. Sizes are read from the pruned graph, never guessed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import onnx

from onnxprune.errors import OnnxPruneError
from onnxprune.genai.cache import GENAI_CONFIG

_ATTENTION = ("GroupQueryAttention", "MultiHeadAttention", "Attention")
_NORMS = ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization", "SkipLayerNormalization",
          "LayerNormalization", "RMSNormalization")


def _attr(node: onnx.NodeProto, name: str):
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def runtime_sizes(model: onnx.ModelProto) -> dict[str, int]:
    """The sizes genai_config.json states, read from ``model``: num_attention_heads and num_key_value_heads (from
    the attention nodes' attributes; every layer must agree, the runtime allocates one cache shape) and
    hidden_size (the width of the first normalisation's scale). OnnxPruneError when the layers disagree."""
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    heads, kv = set(), set()
    for node in model.graph.node:
        if node.op_type in _ATTENTION:
            heads.add(int(_attr(node, "num_heads")))
            kv.add(int(_attr(node, "kv_num_heads") or _attr(node, "num_heads")))
    if len(heads) > 1 or len(kv) > 1:
        raise OnnxPruneError(f"the pruned layers have different head counts ({sorted(heads)} query, {sorted(kv)} "
                             "KV): onnxruntime-genai needs one count for every layer; prune heads with one ratio "
                             "for all layers (no --global)")
    sizes = {}
    if heads:
        sizes["num_attention_heads"], sizes["num_key_value_heads"] = heads.pop(), kv.pop()
    norm = next((n for n in model.graph.node if n.op_type in _NORMS), None)
    scale = None if norm is None else shapes.get(norm.input[2 if norm.op_type.startswith("Skip") else 1])
    if scale:
        sizes["hidden_size"] = int(scale[-1])
    return sizes


def rewrite_genai_dir(source_model: str | os.PathLike, output_model: str | os.PathLike,
                      pruned: onnx.ModelProto) -> Path:
    """Write ``genai_config.json`` beside ``output_model`` (the source's, with the decoder's filename, head
    counts, hidden size and the intermediate size if it states one, taken from ``pruned``) and copy every other
    small file of the source directory that is not a model or its data (tokenizer, processing, chat template)."""
    source_dir, out = Path(source_model).parent, Path(output_model)
    config = json.loads((source_dir / GENAI_CONFIG).read_text())
    decoder = config.setdefault("model", {}).setdefault("decoder", {})
    sizes = runtime_sizes(pruned)
    decoder.update({k: v for k, v in sizes.items() if k in decoder or k != "hidden_size"})
    if "hidden_size" in sizes:
        decoder["hidden_size"] = sizes["hidden_size"]
    if "intermediate_size" in decoder:
        widths = [list(i.dims) for i in pruned.graph.initializer if "down_proj" in i.name and len(i.dims) == 2]
        if widths:
            decoder["intermediate_size"] = int(widths[0][0])
    decoder["filename"] = out.name
    skip = {Path(source_model).name, out.name, GENAI_CONFIG}
    data = {e.value for i in onnx.load(os.fspath(source_model), load_external_data=False).graph.initializer
            for e in i.external_data if e.key == "location"}
    for item in source_dir.iterdir():
        if item.is_file() and item.name not in skip | data and item.suffix not in (".onnx", ".data") \
                and not (out.parent / item.name).exists():
            shutil.copy2(item, out.parent / item.name)
    target = out.parent / GENAI_CONFIG
    target.write_text(json.dumps(config, indent=4))
    return target
