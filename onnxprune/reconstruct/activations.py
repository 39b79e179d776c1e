"""Intermediate tensors of a model on calibration batches: the requested tensors become the graph's outputs, the
nodes they do not need are dropped (only the prefix of the model runs), and onnxruntime runs one batch at a time."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx

from onnxprune.data import Feeds
from onnxprune.ir.export import ExportedModel
from onnxprune.runtime import make_session


def prefix_model(model: ExportedModel, names: list[str], dtypes: dict[str, np.dtype]) -> ExportedModel:
    """``model`` with ``names`` as its outputs and only the nodes they depend on (all nodes when some node has a
    subgraph, whose outer-scope reads are not followed)."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    graph = proto.graph
    nested = any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node
                 for a in n.attribute)
    if not nested:
        producer = {out: k for k, node in enumerate(graph.node) for out in node.output if out}
        keep, stack = set(), list(names)
        while stack:
            k = producer.get(stack.pop())
            if k is not None and k not in keep:
                keep.add(k)
                stack.extend(graph.node[k].input)
        nodes = [graph.node[k] for k in sorted(keep)]
        del graph.node[:]
        graph.node.extend(nodes)
    del graph.output[:]
    graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(
        np.dtype(dtypes[n])), None) for n in names)
    return ExportedModel(proto, model.data_dir)


def collect(model: ExportedModel, names: list[str], dtypes: dict[str, np.dtype],
            batches: list[Feeds]) -> Iterator[dict[str, np.ndarray]]:
    """For every batch, {name: value} of the requested tensors (graph inputs are read from the feeds)."""
    graph_inputs = {i.name for i in model.proto.graph.input}
    inner = [n for n in names if n not in graph_inputs]
    session = make_session(prefix_model(model, inner, dtypes), "cpu") if inner else None
    for feeds in batches:
        values = dict(zip(inner, session.run(inner, feeds))) if session is not None else {}
        values.update({n: feeds[n] for n in names if n in graph_inputs})
        yield values
