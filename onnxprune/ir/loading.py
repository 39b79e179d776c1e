"""Load an ONNX model into onnx-graphsurgeon IR ready for analysis: read and checked (``reading``), shapes
inferred (``shapes``), Constant nodes and static shape subgraphs folded, nodes named; symbolic dims kept."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.logger import G_LOGGER

from onnxprune.errors import ModelLoadError
from onnxprune.ir.graph import all_nodes, all_tensors, proto_graphs, unique_body_names
from onnxprune.ir.provenance import trace_sources
from onnxprune.ir.reading import _EXTERNAL_FILES, _check_tensor_data, default_opset, map_external_data, read_model
from onnxprune.ir.shape_values import rule_for
from onnxprune.ir.shape_view import ShapeView, UnknownShape
from onnxprune.ir.shapes import _check_shapes, infer_shapes, refresh_shapes, set_input_shapes
from onnxprune.ir.weight_folding import (
    computes_from_constants,
    fold_weight_nodes,
    grows,
    layout_sources,
    needing_readers,
)

_MAX_FOLD_ROUNDS = 64  # each ShuffleNetV2 unit's shuffle target needs the previous unit's shapes: one round per unit


@dataclass
class LoadedModel:
    """A model ready for analysis: its graph in gs IR, plus what is needed to write it back the way it came."""

    graph: gs.Graph
    opset: int
    ir_version: int
    opset_imports: list = field(default_factory=list)
    path: str | None = None
    producer_name: str = ""
    producer_version: str = ""
    sources: dict = field(default_factory=dict)  # folded initializer -> (framework parameter, axes): provenance.py
    initializer_inputs: str = "protect"  # how initializers listed as graph inputs were treated (see load)
    external_data: bool = False  # the file kept (some) initializers in external data files; saving does the same
    metadata_props: list = field(default_factory=list)  # (key, value) pairs: labels and settings pipelines read
    node_metadata: dict = field(default_factory=dict)  # node name -> its metadata_props (exporters' name scopes)
    model_version: int = 0
    doc_string: str = ""
    domain: str = ""
    grown: list = field(default_factory=list)  # notes: constants folded although larger than what they replaced
    layout_folds: dict = field(default_factory=dict)  # folded layout constant -> LayoutFold (weight_folding)
    value_info: frozenset | None = None  # names the file gave shapes to (in any body); None: write every shape



def fold_static_values(graph: gs.Graph) -> None:
    """Replace outputs that static shapes determine (per the shape-value rules' ``static_value``) by constants."""
    for node in graph.nodes:
        if not node.outputs:
            continue
        try:
            value = rule_for(node).static_value(node, ShapeView(node))
        except UnknownShape:
            continue
        except Exception:  # a node that does not fit its op (malformed model): not folded; analysis blocks it
            continue
        if value is not None:
            out = node.outputs[0]
            out.to_constant(value)
            node.outputs.clear()


_CONSTANT_FORMS = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                   "value_ints": np.int64}


def normalize_constant_nodes(model: onnx.ModelProto) -> None:
    """Rewrite Constant nodes given as value_float(s)/value_int(s) into typed ``value`` tensors.

    onnx-graphsurgeon folds ``value_floats`` into float64 arrays although ONNX defines them as float32, which
    would change the element type of everything computed from them.
    """
    for node in model.graph.node:
        if node.op_type != "Constant" or len(node.attribute) != 1 or node.attribute[0].name not in _CONSTANT_FORMS:
            continue
        attr = node.attribute[0]
        value = onnx.helper.get_attribute_value(attr)
        array = np.array(value, dtype=_CONSTANT_FORMS[attr.name])
        del node.attribute[:]
        node.attribute.append(onnx.helper.make_attribute("value", onnx.numpy_helper.from_array(array)))


def _name_nodes(graph: gs.Graph) -> None:
    taken = {n.name for n in all_nodes(graph) if n.name}
    for k, node in enumerate(all_nodes(graph)):  # body nodes too (If/Loop/Scan)
        if not node.name:
            name = f"{node.op}_{k}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def load(source: str | os.PathLike | onnx.ModelProto, input_shapes: dict | None = None,
         strict_shapes: bool = True, initializer_inputs: str = "auto") -> LoadedModel:
    """Load ``source`` into gs IR: shapes inferred (symbolic dims kept), Constant nodes and static shape
    subgraphs folded, nodes named and sorted. Raises ModelLoadError / ShapeError with a clear message.

    ``initializer_inputs``: initializers the model also lists as graph inputs stay inputs either way; 'protect'
    treats them as overridable at run time (nothing reading them is folded, their groups are blocked), 'prune'
    as plain weights; 'auto' is 'prune' for IR version < 4, where the format requires every initializer to be
    listed as an input (so the listing says nothing about intent), else 'protect'."""
    arrays: dict[str, np.ndarray] = {}  # large initializers, memory-mapped from the model or its data files
    model, path = read_model(source, mapped=arrays)
    try:
        arrays.update(map_external_data(model, Path(path).parent) if path is not None else {})
    except ModelLoadError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    _check_tensor_data(model, path or "the model", arrays)
    if input_shapes:
        model = _copy_if_given(model, path)
        set_input_shapes(model, input_shapes)
    opset = default_opset(model)
    normalize_constant_nodes(model)
    # files come from users: a malformed one must not abort us (isolate)
    infer_shapes(model, isolate=path is not None, weights=arrays)
    G_LOGGER.severity = G_LOGGER.ERROR
    try:
        graph = gs.import_onnx(model)
    except Exception as exc:
        raise ModelLoadError(f"cannot import the graph: {exc}") from None
    unique_body_names(graph)  # analysis keys axes by tensor name: two bodies may reuse one
    tensors = all_tensors(graph)  # weights read only inside If/Loop/Scan bodies too
    for name, values in arrays.items():
        if isinstance(tensors.get(name), gs.Constant):
            tensors[name].values = values
            tensors[name].data_location = None
    overridable = _keep_initializer_inputs(graph, model)
    sources = trace_sources(graph)  # before folding renames Transpose(W) and friends

    if initializer_inputs == "auto":
        initializer_inputs = "prune" if model.ir_version < 4 else "protect"
    if initializer_inputs == "prune":
        overridable = set()

    grown: dict[str, str] = {}  # folded output -> note, for values folded larger than their subgraph
    layout_folds = layout_sources(graph)  # what folding will copy: refold_layouts stores it once when written

    def keep(node: gs.Node) -> bool:
        """Not folded: what reads an overridable initializer (not constant), and what would grow the model unless
        a handler needs the value as a constant (weight_folding's 'No growth')."""
        if any(t.name in overridable for t in node.inputs):
            return True
        larger = grows(node)  # None: not known yet (its size comes from a shape computation folded this round)
        if larger is False:
            for t in node.inputs:  # a noted value folded further: the note follows it (to the constant written)
                if t.name in grown and len(node.outputs) == 1 and computes_from_constants(node):
                    grown.setdefault(node.outputs[0].name, grown.pop(t.name))
            return False
        needing = needing_readers(node)
        if not needing:
            return True
        out = node.outputs[0]
        if larger is None:
            return False
        readers = ", ".join(f"{r.op} '{r.name}'" for r in needing)
        grown[out.name] = (f"folded '{out.name}' ({node.op} '{node.name}', {int(np.prod(out.shape))} values) "
                           f"although it is larger than what it replaced: {readers} needs it as a constant to prune")
        return False

    learned = changed = True  # whether the last shape refresh changed what gs's folding looks at / anything
    signature = _shape_signature(graph)
    for _ in range(_MAX_FOLD_ROUNDS):  # folding makes more shapes static, which lets more shape subgraphs fold
        before = (len(graph.nodes), _shapes_only(signature))
        fold_static_values(graph)
        fold_weight_nodes(graph, model.opset_import, model.ir_version, keep)  # lazily; gs folds what it leaves
        try:
            # gs folds nodes of constant inputs and Shape subgraphs of static shapes: after a refresh that taught no
            # type and no shape of a Shape node's input, only nodes this round made constant can fold (gs copies the
            # whole graph: half a load's time)
            if learned or _has_constant_node(graph, keep):
                graph.fold_constants(fold_shapes=True, error_ok=True, should_exclude_node=keep)
            graph.cleanup(remove_unused_graph_inputs=False).toposort()
        except Exception as exc:  # a cycle, or a graph gs cannot rebuild
            raise ModelLoadError(f"cannot process the graph: {exc}") from None
        if not changed and len(graph.nodes) == before[0]:
            break  # nothing folded, and the last refresh changed nothing: another one would return the same shapes
        folded = _shape_signature(graph)
        refresh_shapes(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
        signature = _shape_signature(graph)
        changed = signature != folded
        learned = _taught_folding(graph, folded, signature)
        if (len(graph.nodes), _shapes_only(signature)) == before:
            break
    _name_nodes(graph)
    constants = {name for name, t in graph.tensors().items() if isinstance(t, gs.Constant)}
    if strict_shapes:
        _check_shapes(graph)
    return LoadedModel(graph=graph, opset=opset, ir_version=model.ir_version,
                       opset_imports=[(i.domain, i.version) for i in model.opset_import], path=path,
                       producer_name=model.producer_name, producer_version=model.producer_version,
                       external_data=path is not None and bool(_EXTERNAL_FILES.get(str(Path(path).resolve()))),
                       sources=sources, initializer_inputs=initializer_inputs,
                       metadata_props=[(e.key, e.value) for e in model.metadata_props],
                       node_metadata={n.name: [(e.key, e.value) for e in n.metadata_props]
                                      for n in model.graph.node if n.name and len(n.metadata_props)},
                       model_version=model.model_version, doc_string=model.doc_string, domain=model.domain,
                       grown=[note for name, note in grown.items() if name in constants],
                       layout_folds={name: fold for name, fold in layout_folds.items() if name in constants},
                       value_info=frozenset(v.name for g in proto_graphs(model.graph) for v in g.value_info))


def _shape_signature(graph: gs.Graph) -> list:
    """(name, shape, element type) of every activation, to see whether a folding round taught anything new."""
    return [(t.name, None if t.shape is None else tuple(t.shape), t.dtype)
            for t in graph.tensors().values() if isinstance(t, gs.Variable)]


def _shapes_only(signature: list) -> list:
    return [entry[:2] for entry in signature]


def _taught_folding(graph: gs.Graph, before: list, after: list) -> bool:
    """Whether a refresh (signatures ``before`` and ``after``, with types) changed a type, or the shape of a tensor
    that a Shape node reads (the only shapes onnx-graphsurgeon's shape folding uses)."""
    read_by_shape = {n.inputs[0].name for n in graph.nodes if n.op == "Shape" and n.inputs}
    return any(old[2] != new[2] or (old != new and old[0] in read_by_shape) for old, new in zip(before, after))


def _has_constant_node(graph: gs.Graph, keep) -> bool:
    """Whether some node (not kept) reads only constants, or nothing at all (a Constant node)."""
    return any(all(isinstance(t, gs.Constant) for t in n.inputs if t.name) and not keep(n) for n in graph.nodes)


def _keep_initializer_inputs(graph: gs.Graph, model: onnx.ModelProto) -> set[str]:
    """gs drops initializers from the graph inputs; put those the model lists as inputs back, in their place, so
    they stay overridable in the pruned model and the analysis protects them. Returns their names."""
    listed = [i.name for i in model.graph.input]
    overridable = {i.name for i in model.graph.initializer} & set(listed)
    if not overridable:
        return overridable
    tensors = graph.tensors()
    current = {t.name: t for t in graph.inputs}
    graph.inputs = [current.get(name, tensors.get(name)) for name in listed
                    if name in current or isinstance(tensors.get(name), gs.Constant)]
    return overridable


def _copy_if_given(model: onnx.ModelProto, path: str | None) -> onnx.ModelProto:
    if path is not None:
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy
