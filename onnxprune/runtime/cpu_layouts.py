"""Layouts onnxruntime runs only on CUDA, rewritten for its CPU kernels so a model can still be checked on CPU.

MultiHeadAttention (com.microsoft) takes packed inputs — a query alone [B, S, N, 3, H] (packed QKV) or a key
without value [B, L, N, 2, H] (packed KV) — and onnxruntime's CPU kernel refuses both ("not implemented for CPU").
``unpack_attention`` splits each packed input into the 3-D query/key/value [B, S, N*H] the spec defines the packing
from (Gather on the packed axis, then Reshape), which the CPU kernel runs. Only validation uses it: the nodes and
weights of the model stay as they are, only the split is added, so what is compared is the model that is written.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.ir.export import ExportedModel
from onnxprune.runtime.sessions import ModelSource


def _packed_inputs(node: onnx.NodeProto) -> int:
    """How many tensors a MultiHeadAttention node's packed input holds: 3 (QKV in the query), 2 (KV in the key),
    0 (nothing packed, or not a MultiHeadAttention)."""
    if node.op_type != "MultiHeadAttention" or node.domain != "com.microsoft":
        return 0
    inputs = list(node.input) + [""] * max(0, 3 - len(node.input))
    return 3 if not inputs[1] else 2 if not inputs[2] else 0


def has_packed_attention(model: onnx.ModelProto) -> bool:
    """Whether ``model``'s main graph has a MultiHeadAttention with a packed input."""
    return any(_packed_inputs(node) for node in model.graph.node)


def unpack_attention(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose MultiHeadAttention packed inputs are split into 3-D query/key/value (module
    docstring). The copy shares nothing with ``model``; external tensors stay references to the same files."""
    model = copy.deepcopy(model)
    graph = model.graph
    names = {name for node in graph.node for name in (*node.input, *node.output)} | {
        i.name for i in graph.initializer}
    prefix = "onnxprune_unpack"
    while any(name.startswith(prefix) for name in names):
        prefix += "_"
    graph.initializer.extend([numpy_helper.from_array(np.array([0, 0, -1], np.int64), f"{prefix}_shape")] + [
        numpy_helper.from_array(np.array(i, np.int64), f"{prefix}_{i}") for i in range(3)])
    nodes = []
    for node in graph.node:
        parts = _packed_inputs(node)
        if parts:
            inputs = list(node.input) + [""] * max(0, 3 - len(node.input))
            source, split = inputs[3 - parts], []
            for i in range(parts):
                piece = f"{prefix}_{source}_{i}"
                nodes.append(helper.make_node("Gather", [source, f"{prefix}_{i}"], [piece + "_bnh"], axis=3))
                nodes.append(helper.make_node("Reshape", [piece + "_bnh", f"{prefix}_shape"], [piece]))
                split.append(piece)
            inputs[3 - parts:3] = split
            del node.input[:]
            node.input.extend(inputs)
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def runnable_on_cpu(model: ModelSource) -> tuple[ModelSource, bool]:
    """``model`` as onnxruntime's CPU kernels run it, and whether it had to be rewritten (``unpack_attention``);
    a model without packed attention comes back as it is."""
    if isinstance(model, ExportedModel):
        proto, data_dir = model.proto, model.data_dir
    elif isinstance(model, onnx.ModelProto):
        proto, data_dir = model, None
    else:
        proto, data_dir = onnx.load(os.fspath(model), load_external_data=False), os.path.dirname(os.fspath(model))
    if not has_packed_attention(proto):
        return model, False
    unpacked = unpack_attention(proto)
    return (ExportedModel(unpacked, data_dir) if data_dir is not None else unpacked), True
