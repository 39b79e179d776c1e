"""Load an ONNX model into onnx-graphsurgeon IR with constants folded and every tensor's shape inferred.

Shape inference runs on a weight-free view of the model (large initializers replaced by typed graph inputs), so
loading never copies weight data just to learn shapes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import shape_inference
from onnx_graphsurgeon.logger import G_LOGGER

from onnxprune.errors import ModelLoadError, ShapeError
from onnxprune.ir import copy_graph

# Initializers with more elements than this are left out of the shape-inference view (shape-like constants such as
# Reshape targets are tiny and must stay in, because inference reads their values).
_VIEW_MAX_ELEMENTS = 64
_MAX_FOLD_ROUNDS = 6


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


def read_model(source: str | os.PathLike | onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """Read an ONNX file (with its external data) or pass a ModelProto through; raise ModelLoadError clearly."""
    if isinstance(source, onnx.ModelProto):
        return source, None
    path = Path(source)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: file is empty")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for garbage input
        raise ModelLoadError(f"{path}: not a valid ONNX protobuf ({exc.__class__.__name__}: {exc})") from None
    if not model.graph.node:
        raise ModelLoadError(f"{path}: the file parsed but holds no ONNX graph nodes (is it an ONNX model?)")
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot read external data ({exc})") from None
    return model, str(path)


def default_opset(model: onnx.ModelProto) -> int:
    """The opset version of the default ONNX domain imported by ``model``."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise ModelLoadError("model imports no default-domain opset")


def set_input_shapes(model: onnx.ModelProto, input_shapes: dict[str, list[int | str]]) -> None:
    """Overwrite the declared shape of graph inputs (e.g. to make a dynamic dim static)."""
    inputs = {i.name: i for i in model.graph.input}
    for name, dims in input_shapes.items():
        if name not in inputs:
            raise ModelLoadError(f"--input-shape names '{name}', but the graph inputs are {sorted(inputs)}")
        tensor_type = inputs[name].type.tensor_type
        tensor_type.shape.Clear()
        for dim in dims:
            entry = tensor_type.shape.dim.add()
            if isinstance(dim, str):
                entry.dim_param = dim
            else:
                entry.dim_value = int(dim)
    del model.graph.value_info[:]  # shapes recorded for the old input shapes no longer hold


def infer_shapes(model: onnx.ModelProto) -> None:
    """Infer every value's shape on a weight-free view and store the results in ``model.graph.value_info``."""
    view = onnx.ModelProto()
    view.ir_version = model.ir_version
    view.opset_import.extend(model.opset_import)
    view.functions.extend(model.functions)
    graph = view.graph
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    graph.value_info.extend(model.graph.value_info)  # the exporter's shapes, for ops ONNX cannot infer (GroupNorm)
    declared = {i.name for i in model.graph.input}
    for init in model.graph.initializer:
        if int(np.prod(init.dims)) <= _VIEW_MAX_ELEMENTS:
            graph.initializer.append(init)
        elif init.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    try:
        inferred = shape_inference.infer_shapes(view, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise ShapeError(f"ONNX shape inference failed: {exc}") from None
    del model.graph.value_info[:]
    outputs = {o.name for o in model.graph.output}
    model.graph.value_info.extend(v for v in inferred.graph.value_info if v.name not in outputs)
    for out in model.graph.output:
        found = [o for o in inferred.graph.output if o.name == out.name]
        if found and not out.type.tensor_type.HasField("shape"):
            out.CopyFrom(found[0])


def fold_static_values(graph: gs.Graph) -> None:
    """Replace outputs that static shapes determine (per the handlers' ``static_value``) by constants."""
    from onnxprune.handler import ShapeView, UnknownShape, handler_for

    for node in graph.nodes:
        handler = handler_for(node)
        if handler is None or not node.outputs:
            continue
        try:
            value = handler.static_value(node, ShapeView(node))
        except UnknownShape:
            continue
        if value is not None:
            out = node.outputs[0]
            out.to_constant(value)
            node.outputs.clear()


def refresh_shapes(graph: gs.Graph, opset_imports, ir_version: int) -> None:
    """Re-infer the shapes of ``graph``'s activations after folding, on a weight-free shallow copy."""
    view = copy_graph(graph)
    stand_ins: dict[str, gs.Variable] = {}
    for node in view.nodes:
        for i, tensor in enumerate(node.inputs):
            if isinstance(tensor, gs.Constant) and _numel(tensor) > _VIEW_MAX_ELEMENTS:
                if tensor.name not in stand_ins:
                    stand_ins[tensor.name] = gs.Variable(tensor.name, dtype=tensor.dtype, shape=list(tensor.shape))
                node.inputs[i] = stand_ins[tensor.name]
    view.inputs.extend(stand_ins.values())
    proto = gs.export_onnx(view, do_type_check=False)
    del proto.opset_import[:]
    proto.opset_import.extend(opset_imports)
    proto.ir_version = ir_version
    try:
        inferred = shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise ShapeError(f"ONNX shape inference failed after constant folding: {exc}") from None
    tensors = graph.tensors()
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        tensor = tensors.get(info.name)
        if not isinstance(tensor, gs.Variable) or not info.type.tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in info.type.tensor_type.shape.dim]
        old = tensor.shape
        if old is not None and len(old) == len(dims):
            dims = [o if isinstance(o, int) and not isinstance(n, int) else n for o, n in zip(old, dims)]
        tensor.shape = dims
        if tensor.dtype is None and info.type.tensor_type.elem_type:
            tensor.dtype = onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
    complete_shapes(graph)


def complete_shapes(graph: gs.Graph) -> None:
    """Fill dims that shape inference left unknown but a handler can determine (``complete_shape``)."""
    from onnxprune.handler import ShapeView, UnknownShape, handler_for

    for node in graph.nodes:
        out = node.outputs[0] if node.outputs else None
        if not isinstance(out, gs.Variable) or (out.shape is not None and all(
                isinstance(d, int) or (isinstance(d, str) and not d.startswith("unk__")) for d in out.shape)):
            continue
        handler = handler_for(node)
        try:
            dims = handler.complete_shape(node, ShapeView(node)) if handler is not None else None
        except UnknownShape:
            dims = None
        if dims is not None:
            out.shape = dims


def _numel(tensor: gs.Constant) -> int:
    # A Constant's shape is read from its (possibly lazy) values' metadata, without loading external data.
    return int(np.prod(tensor.shape)) if tensor.shape is not None else tensor.values.size


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
    taken = {n.name for n in graph.nodes if n.name}
    for k, node in enumerate(graph.nodes):
        if not node.name:
            name = f"{node.op}_{k}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def _check_shapes(graph: gs.Graph) -> None:
    for tensor in graph.inputs:
        if tensor.shape is None:
            raise ShapeError(f"graph input '{tensor.name}' has no shape; give one with --input-shape "
                             f"{tensor.name}:D1xD2x...")
    for node in graph.nodes:
        if node.domain not in ("", "ai.onnx", None):
            continue
        for tensor in node.outputs:
            is_tensor = getattr(tensor, "type", "tensor_type") == "tensor_type"
            if isinstance(tensor, gs.Variable) and is_tensor and tensor.shape is None and tensor.outputs:
                raise ShapeError(f"shape of tensor '{tensor.name}' ({node.op} node '{node.name}') could not be "
                                 "inferred; give static input shapes with --input-shape NAME:D1xD2x...")


def load(source: str | os.PathLike | onnx.ModelProto, input_shapes: dict | None = None,
         strict_shapes: bool = True) -> LoadedModel:
    """Load ``source`` into gs IR: shapes inferred (symbolic dims kept), Constant nodes and static shape
    subgraphs folded, nodes named and sorted. Raises ModelLoadError / ShapeError with a clear message."""
    model, path = read_model(source)
    if input_shapes:
        model = _copy_if_given(model, path)
        set_input_shapes(model, input_shapes)
    opset = default_opset(model)
    normalize_constant_nodes(model)
    infer_shapes(model)
    G_LOGGER.severity = G_LOGGER.ERROR
    try:
        graph = gs.import_onnx(model)
    except Exception as exc:
        raise ModelLoadError(f"cannot import the graph: {exc}") from None
    for _ in range(_MAX_FOLD_ROUNDS):  # folding makes more shapes static, which lets more shape subgraphs fold
        before = len(graph.nodes)
        fold_static_values(graph)
        graph.fold_constants(fold_shapes=True, error_ok=True).cleanup(remove_unused_graph_inputs=False).toposort()
        refresh_shapes(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
        if len(graph.nodes) == before:
            break
    _name_nodes(graph)
    if strict_shapes:
        _check_shapes(graph)
    return LoadedModel(graph=graph, opset=opset, ir_version=model.ir_version,
                       opset_imports=[(i.domain, i.version) for i in model.opset_import], path=path,
                       producer_name=model.producer_name, producer_version=model.producer_version)


def _copy_if_given(model: onnx.ModelProto, path: str | None) -> onnx.ModelProto:
    if path is not None:
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy
