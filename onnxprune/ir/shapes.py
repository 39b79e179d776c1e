"""Shapes of every tensor: ONNX shape inference run strictly on a weight-free view of the model (large
initializers replaced by typed graph inputs, so no weight is copied to learn shapes), refreshed after folding, and
completed where a shape-value rule knows more than ONNX inference (``onnxprune.ir.shape_values``)."""

from __future__ import annotations

import faulthandler
import os

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import shape_inference

from onnxprune.errors import ModelLoadError, ShapeError
from onnxprune.ir.contrib import with_contrib_shapes
from onnxprune.ir.graph import copy_body_value_info, copy_graph
from onnxprune.ir.loop_state import type_loop_state
from onnxprune.ir.shape_fallback import fill_untyped
from onnxprune.ir.shape_values import rule_for
from onnxprune.ir.shape_view import ShapeView, UnknownShape

# Initializers with more elements than this are left out of the shape-inference view (shape-like constants such as
# Reshape targets are tiny and must stay in, because inference reads their values).
_VIEW_MAX_ELEMENTS = 64


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


def infer_shapes(model: onnx.ModelProto, isolate: bool = False, weights: dict[str, np.ndarray] | None = None) -> None:
    """Infer every value's shape on a weight-free view and store the results in ``model.graph.value_info``; what
    ONNX's inference leaves untyped comes from ``shape_fallback`` (symbolic inference, then one run when the input
    shapes are concrete: ``weights`` holds the initializers the proto holds no data for)."""
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
    inferred = _infer_strictly(with_contrib_shapes(view), isolate=isolate)
    inferred = type_loop_state(inferred, lambda typed: _infer_strictly(typed, isolate=isolate))
    copy_body_value_info(inferred.graph, model.graph)  # what inference learned inside If/Loop/Scan bodies
    fill_untyped(inferred, model, weights)
    del model.graph.value_info[:]
    outputs = {o.name for o in model.graph.output}
    model.graph.value_info.extend(v for v in inferred.graph.value_info if v.name not in outputs)
    for out in model.graph.output:
        found = [o for o in [*inferred.graph.output, *inferred.graph.value_info]
                 if o.name == out.name and o.type.tensor_type.HasField("shape")]
        if found and not out.type.tensor_type.HasField("shape"):
            out.CopyFrom(found[0])


def _infer_strictly(view: onnx.ModelProto, isolate: bool = False) -> onnx.ModelProto:
    """Strict shape and type inference; when the model's own value_info contradicts it, once more without them
    (stale exporter shapes are common and harmless); ShapeError when the graph itself is inconsistent.

    ``isolate`` runs it in a forked process: ONNX's inference aborts the whole process on some malformed graphs
    (a failed C++ assertion), which must end in a clear refusal, not a crash."""
    infer = _infer_in_child if isolate and hasattr(os, "fork") else _infer
    try:
        return infer(view)
    except ShapeError:
        raise
    except Exception as exc:
        first = exc
    if view.graph.value_info:
        bare = onnx.ModelProto()
        bare.CopyFrom(view)
        del bare.graph.value_info[:]
        try:
            return infer(bare)
        except Exception:
            pass
    message = " ".join(str(first).split())
    raise ShapeError(f"the model is inconsistent (ONNX shape inference: {message})") from None


def _infer(view: onnx.ModelProto) -> onnx.ModelProto:
    return shape_inference.infer_shapes(view, check_type=True, strict_mode=True, data_prop=True)


def _infer_in_child(view: onnx.ModelProto) -> onnx.ModelProto:
    """``_infer`` in a forked child that sends back the inferred (weight-free) model or the error message."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Python cleanup, no messages of its own, just the answer
        os.close(read_end)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        faulthandler.disable()
        try:
            payload = b"+" + _infer(view).SerializeToString()
        except BaseException as exc:
            payload = b"-" + str(exc).encode("utf-8", "replace")
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        code = os.waitstatus_to_exitcode(status)
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        raise ShapeError(f"ONNX shape inference crashed on this model ({how}): the model is malformed")
    if payload[:1] == b"-":
        raise ValueError(payload[1:].decode("utf-8", "replace"))
    return onnx.load_model_from_string(payload[1:])


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
    listed = {t.name for t in view.inputs}
    view.inputs = [stand_ins.get(t.name, t) for t in view.inputs] + [v for n, v in stand_ins.items() if n not in listed]
    try:
        proto = gs.export_onnx(view, do_type_check=False)
    except Exception as exc:  # e.g. an empty list attribute, which onnx-graphsurgeon cannot write back
        raise ModelLoadError(f"cannot write the graph back: {exc}") from None
    del proto.opset_import[:]
    proto.opset_import.extend(opset_imports)
    proto.ir_version = ir_version
    try:
        inferred = shape_inference.infer_shapes(with_contrib_shapes(proto), check_type=False, strict_mode=False,
                                                data_prop=True)
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
    """Fill dims that shape inference left unknown but a shape-value rule can determine (``complete_shape``)."""
    for node in graph.nodes:
        out = node.outputs[0] if node.outputs else None
        if not isinstance(out, gs.Variable) or (out.shape is not None and all(
                isinstance(d, int) or (isinstance(d, str) and not d.startswith("unk__")) for d in out.shape)):
            continue
        try:
            dims = rule_for(node).complete_shape(node, ShapeView(node))
        except UnknownShape:
            dims = None
        except Exception:  # a node that does not fit its op (malformed model): left as is; analysis blocks it
            dims = None
        if dims is not None:
            out.shape = dims


# ops whose output shape depends on input values, not only on input shapes
_DATA_SHAPED = {"NonZero", "Unique", "Compress", "NonMaxSuppression", "StringSplit", "RegexFullMatch"}


def _data_shaped(node: gs.Node) -> str | None:
    """Why ``node``'s output shape depends on input values ('NonZero in node 'n''), or None."""
    if node.op in _DATA_SHAPED:
        return f"{node.op} in node '{node.name}'"
    if node.op == "TopK" and len(node.inputs) > 1 and not isinstance(node.inputs[1], gs.Constant):
        return f"TopK in node '{node.name}' with k computed from the data"
    if node.op in ("If", "Loop", "Scan"):
        for body in (v for v in node.attrs.values() if isinstance(v, gs.Graph)):
            inner = next((c for c in map(_data_shaped, body.nodes) if c), None)
            if inner:
                return inner
        if node.op == "If" and not isinstance(node.inputs[0], gs.Constant):
            return f"If in node '{node.name}', whose branches give different shapes"
        if node.op == "Loop" and node.inputs and not all(isinstance(t, gs.Constant) for t in node.inputs[:2] if t.name):
            return f"Loop in node '{node.name}' with a trip count or condition computed from the data"
    return None


def data_dependence(tensor: gs.Tensor) -> str | None:
    """Why the shape of ``tensor`` depends on the input data: the first op up its producers (bodies of If/Loop
    included) whose output shape follows values, not shapes (NonZero, Unique, TopK with k from data, an If on data
    whose branches differ, a Loop whose trip count is data); None when nothing upstream does."""
    seen, todo = set(), [tensor]
    while todo:
        t = todo.pop()
        if id(t) in seen or not t.inputs:
            continue
        seen.add(id(t))
        producer = t.inputs[0]
        cause = _data_shaped(producer)
        if cause:
            return cause
        todo.extend(x for x in producer.inputs if isinstance(x, gs.Variable))
    return None


def _numel(tensor: gs.Constant) -> int:
    # A Constant's shape is read from its (possibly lazy) values' metadata, without loading external data.
    return int(np.prod(tensor.shape)) if tensor.shape is not None else tensor.values.size


def _check_shapes(graph: gs.Graph) -> None:
    """Refuse a graph input without a shape, or an untyped tensor a standard op reads, naming the first node (in
    graph order, any domain) whose output could not be typed and what to do."""
    for tensor in graph.inputs:
        if tensor.shape is None:
            raise ShapeError(f"graph input '{tensor.name}' has no shape; give one with --input-shape "
                             f"{tensor.name}:D1xD2x...")

    def untyped(node: gs.Node) -> gs.Variable | None:
        return next((t for t in node.outputs if isinstance(t, gs.Variable) and t.shape is None and t.outputs
                     and getattr(t, "type", "tensor_type") == "tensor_type"), None)

    if not any(untyped(n) is not None for n in graph.nodes if n.domain in ("", "ai.onnx", None)):
        return
    node = next(n for n in graph.nodes if untyped(n) is not None)
    cause = data_dependence(untyped(node))
    if cause is not None:
        raise ShapeError(f"shape of '{untyped(node).name}' depends on the input data ({cause}); onnxprune needs "
                         f"shapes known before running the model, so it cannot analyse this model (input shapes do "
                         f"not change this)")
    concrete = all(t.shape is not None and all(isinstance(d, int) for d in t.shape) for t in graph.inputs)
    tried = ("ONNX's shape inference, onnxruntime's symbolic shape inference nor a run of the model at its input "
             "shapes" if concrete else "ONNX's shape inference nor onnxruntime's symbolic shape inference")
    todo = ("the model may need an op onnxruntime cannot run here" if concrete else
            "give every graph input a concrete shape with --input-shape NAME:D1xD2x... (e.g. x:1x3x224x224), and "
            "onnxprune observes it by running the model once")
    raise ShapeError(f"shape of tensor '{untyped(node).name}' ({node.op} node '{node.name}') could not be inferred "
                     f"by {tried}; {todo}")
