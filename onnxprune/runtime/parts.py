"""Run a big model a part at a time, so that onnxruntime never holds all of its weights at once.

``PartedSession`` cuts the main graph, in node order, into parts whose constants take at most ``part_bytes`` each,
and runs them one after another, each in a session of its own (made, run, freed), passing on only the activations
later parts or the caller read. onnxruntime maps a model's external data per tensor, so each session reads just its
part's weights: a validation run of a big reference model (the mask oracle) peaks at one part of its weights, not all
of them. The parts run the same nodes with the same kernels as the whole model would; a graph with subgraphs
(If/Loop/Scan read names from outside their bodies) or sparse initializers runs whole.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import onnx

from onnxprune.ir.export import ExportedModel
from onnxprune.runtime.sessions import available_provider, make_session

# A reference model (a mask oracle, or an original compared with) with more bytes of weights in a data file than this
# runs in REFERENCE_PARTS parts (``reference_session``), so the process never maps all its weights at once.
PART_ABOVE = 64 << 20
REFERENCE_PARTS = 4

_ORT_TYPES = {onnx.TensorProto.FLOAT: "float", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.DOUBLE: "double",
              onnx.TensorProto.BFLOAT16: "bfloat16", onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32",
              onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.BOOL: "bool"}


class ValueSpec(NamedTuple):
    """A graph input or output as onnxruntime's sessions describe them (name, shape with dim names, type)."""

    name: str
    shape: list
    type: str


def constant_sizes(graph: onnx.GraphProto) -> dict[str, int]:
    """{initializer name: bytes}, external ones by their stated length, without reading any data."""
    sizes = {}
    for init in graph.initializer:
        entries = {e.key: e.value for e in init.external_data}
        if "length" in entries:
            sizes[init.name] = int(entries["length"])
        elif init.HasField("raw_data"):
            sizes[init.name] = len(init.raw_data)
        else:
            sizes[init.name] = init.ByteSize()
    return sizes


def split_nodes(graph: onnx.GraphProto, part_bytes: int) -> list[list[onnx.NodeProto]]:
    """The nodes of ``graph`` in order, cut into runs that read at most ``part_bytes`` of constants each (a node
    reading more than that is a part of its own); one part when the graph cannot be cut (subgraphs, sparse
    initializers)."""
    nodes = list(graph.node)
    if graph.sparse_initializer or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                       for n in nodes for a in n.attribute):
        return [nodes]
    sizes = constant_sizes(graph)
    parts: list[list[onnx.NodeProto]] = [[]]
    used, counted = 0, set()
    for node in nodes:
        new = {name for name in node.input if name in sizes and name not in counted}
        need = sum(sizes[name] for name in new)
        if parts[-1] and used + need > part_bytes:
            parts.append([])
            used, counted = 0, set()
            new = {name for name in node.input if name in sizes}
            need = sum(sizes[name] for name in new)
        parts[-1].append(node)
        used += need
        counted |= new
    return parts


class PartedSession:
    """A session-like runner (``get_inputs``, ``get_outputs``, ``run``, ``get_providers``) of ``model`` cut into
    parts of at most ``part_bytes`` of constants (``split_nodes``); each part's session is made with ``fuse`` and
    no pre-packed weights, run, and freed before the next."""

    def __init__(self, model: ExportedModel | onnx.ModelProto, provider: str = "cpu", part_bytes: int = 1 << 28,
                 fuse: bool = False):
        self.model = model if isinstance(model, ExportedModel) else ExportedModel(model)
        self.provider, self.fuse = provider, fuse
        self.parts = split_nodes(self.model.proto.graph, part_bytes)

    def _specs(self, values) -> list[ValueSpec]:
        initializers = {i.name for i in self.model.proto.graph.initializer}
        specs = []
        for value in values:
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
            specs.append(ValueSpec(value.name, shape, f"tensor({_ORT_TYPES.get(tensor.elem_type, 'unknown')})"))
        return specs

    def get_inputs(self) -> list[ValueSpec]:
        """The graph inputs (initializers listed as inputs left out)."""
        return self._specs(self.model.proto.graph.input)

    def get_outputs(self) -> list[ValueSpec]:
        """The graph outputs."""
        return self._specs(self.model.proto.graph.output)

    def get_providers(self) -> list[str]:
        """The provider every part runs on."""
        return [available_provider(self.provider)]

    def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The outputs ``names`` (None: all) on ``feeds``, running the parts in order."""
        names = names or [o.name for o in self.model.proto.graph.output]
        reads = [{name for node in part for name in node.input if name} for part in self.parts]
        env = dict(feeds)
        for k, part in enumerate(self.parts):
            later = set(names).union(*reads[k + 1:])
            produced = [name for node in part for name in node.output if name]
            wanted = [name for name in produced if name in later]
            if wanted:
                session = make_session(self._part_model(part, env, wanted), self.provider, fuse=self.fuse,
                                       prepack=False)
                env.update(zip(wanted, session.run(wanted, {n: env[n] for n in self._inputs(part, env)})))
                del session  # no cycles: its weights are unmapped here
            env = {name: value for name, value in env.items() if name in later}
        return [env[name] for name in names]

    def _inputs(self, part: list[onnx.NodeProto], env: dict) -> list[str]:
        produced = {name for node in part for name in node.output}
        return list(dict.fromkeys(name for node in part for name in node.input
                                  if name and name not in produced and name in env))

    def _part_model(self, part: list[onnx.NodeProto], env: dict, outputs: list[str]) -> ExportedModel:
        whole = self.model.proto
        read = {name for node in part for name in node.input}
        inputs = [onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(env[name].dtype),
                                                     env[name].shape) for name in self._inputs(part, env)]
        graph = onnx.helper.make_graph(part, f"{whole.graph.name}_part", inputs,
                                       [onnx.ValueInfoProto(name=name) for name in outputs],
                                       [i for i in whole.graph.initializer if i.name in read])
        model = onnx.helper.make_model(graph, opset_imports=list(whole.opset_import), ir_version=whole.ir_version,
                                       functions=list(whole.functions))
        return ExportedModel(model, self.model.data_dir)


def data_file_bytes(model) -> int:
    """Bytes of the constants of an exported model whose weights are in a data file (0 for any other model)."""
    if not isinstance(model, ExportedModel) or model.data_dir is None:
        return 0
    return sum(constant_sizes(model.proto.graph).values())


def reference_session(model, provider: str = "cpu"):
    """A session (without fusions or pre-packed weights) for the reference side of a comparison: a
    ``PartedSession`` of REFERENCE_PARTS parts when ``model`` has more than PART_ABOVE bytes of weights in a data
    file, else an onnxruntime session. The model that is written always runs whole, elsewhere."""
    size = data_file_bytes(model)
    if size > PART_ABOVE:
        return PartedSession(model, provider, part_bytes=size // REFERENCE_PARTS + 1)
    return make_session(model, provider, fuse=False, prepack=False)
