"""Shapes for the tensors ONNX's shape inference leaves untyped (issue 8 part 2), tried in order:

1. onnxruntime's symbolic shape inference (``onnxruntime.tools.symbolic_shape_infer``) on the same weight-free view;
   it follows shape computations ONNX's data propagation does not (a Squeeze whose axes are computed from
   ``Size(Shape(x))``, Cast/Div/Floor on shapes) and knows onnxruntime's contrib ops;
2. with concrete input shapes only: the shapes observed by running the model once with onnxruntime, on a copy whose
   graph outputs are the untyped tensors (never the user's file);
3. else the tensor stays untyped and loading refuses the model, naming the first node that could not be typed.

Nothing here runs when ONNX's inference typed every tensor, so analysis stays free of running the model when static
inference suffices.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import onnx

from onnxprune.ir.contrib import symbolic_inference

# value_info shapes learned here carry this doc_string, so a caller can tell how each was found
SYMBOLIC, OBSERVED = "onnxprune: symbolic shape inference", "onnxprune: observed by running the model"


def untyped_tensors(model: onnx.ModelProto) -> list[tuple[str, onnx.NodeProto]]:
    """(tensor, producing node) for every tensor of the main graph that a node or the graph output reads but whose
    shape is unknown to ``model`` (no value_info, graph output or input with a shape), in node order."""
    known = {v.name for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]
             if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}
    known |= {v.name for v in [*model.graph.value_info, *model.graph.output]
              if v.type.WhichOneof("value") not in (None, "tensor_type")}  # sequences, maps: not ours to shape
    known |= {i.name for i in model.graph.initializer}
    read = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    return [(name, node) for node in model.graph.node for name in node.output
            if name and name in read and name not in known]


def symbolic_shapes(view: onnx.ModelProto, names: set[str]) -> dict[str, onnx.ValueInfoProto]:
    """Shapes of ``names`` from onnxruntime's symbolic shape inference on ``view`` (what it managed, even when it
    could not infer everything); {} when the tool is unavailable or fails."""
    try:
        infer = symbolic_inference()
    except Exception:  # onnxruntime without its tools, or sympy missing
        return {}
    logger = logging.getLogger("onnxruntime.tools.symbolic_shape_infer")
    level = logger.level
    try:
        logger.setLevel(logging.CRITICAL)
        # The public infer_shapes() writes sym_shape_infer_temp.onnx into the working directory when it cannot
        # finish, and returns nothing: run its steps here instead and keep what it inferred.
        with contextlib.redirect_stdout(None):
            infer._preprocess(view)
            while infer.run_:
                infer._infer_impl()
            infer._update_output_from_vi()
        found = [*infer.out_mp_.graph.value_info, *infer.out_mp_.graph.output]
    except Exception:
        return {}
    finally:
        logger.setLevel(level)
    result = {}
    for info in found:
        if info.name in names and info.type.tensor_type.HasField("shape") and info.type.tensor_type.elem_type:
            info.doc_string = SYMBOLIC
            result[info.name] = info
    return result


def concrete_input_shapes(model: onnx.ModelProto) -> dict[str, tuple[list[int], int]] | None:
    """{graph input: (shape, element type)} when every input that is not an initializer has a fully concrete
    tensor shape, else None."""
    weights = {i.name for i in model.graph.initializer}
    shapes = {}
    for inp in model.graph.input:
        if inp.name in weights:
            continue
        tensor = inp.type.tensor_type
        if not inp.type.HasField("tensor_type") or not tensor.HasField("shape"):
            return None
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if any(d is None for d in dims):
            return None
        shapes[inp.name] = (dims, tensor.elem_type)
    return shapes


def observed_shapes(model: onnx.ModelProto, names: list[str], weights: dict[str, np.ndarray] | None = None,
                    ) -> tuple[dict[str, onnx.ValueInfoProto], str]:
    """Shapes of ``names`` seen in one onnxruntime run of a copy of ``model`` (its large initializers taken from
    ``weights`` where the proto holds none) on made-up inputs at its concrete input shapes: floats from a normal
    distribution, integers 0 (a valid index into any table), booleans False. Returns ({name: value_info}, why
    nothing was observed: '' when the run worked)."""
    shapes = concrete_input_shapes(model)
    if shapes is None:
        return {}, "the graph inputs have symbolic dims"
    try:
        import onnxruntime as ort
    except ImportError:
        return {}, "onnxruntime is not installed"
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for init in copy.graph.initializer:
        if weights and init.name in weights:  # memory-mapped or external: the proto holds no data
            init.CopyFrom(onnx.numpy_helper.from_array(np.asarray(weights[init.name]), init.name))
    listed = {o.name for o in copy.graph.output}
    copy.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in listed)
    rng = np.random.default_rng(0)
    feeds = {}
    for name, (dims, elem_type) in shapes.items():
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
        feeds[name] = (rng.standard_normal(dims).astype(dtype) if np.issubdtype(dtype, np.floating)
                       else np.zeros(dims, dtype))
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(copy.SerializeToString(), options, providers=["CPUExecutionProvider"])
        outputs = [o.name for o in session.get_outputs()]
        values = session.run([n for n in names if n in outputs], feeds)
    except Exception as exc:
        return {}, f"onnxruntime could not run it at the given input shapes ({' '.join(str(exc).split())[:200]})"
    result = {}
    for name, value in zip([n for n in names if n in outputs], values):
        if isinstance(value, np.ndarray):
            elem_type = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
            result[name] = onnx.helper.make_tensor_value_info(name, elem_type, list(value.shape), doc_string=OBSERVED)
    return result, ""


def fill_untyped(inferred: onnx.ModelProto, model: onnx.ModelProto,
                 weights: dict[str, np.ndarray] | None = None) -> list[tuple[str, onnx.NodeProto]]:
    """Add to ``inferred`` (the weight-free view after ONNX's inference) value_info for the tensors ONNX left
    untyped: from symbolic shape inference, then, when ``model`` (the full model, weights in ``weights`` where
    memory-mapped) has concrete input shapes, from one run. Returns the (tensor, node) pairs still untyped."""
    missing = untyped_tensors(inferred)
    if not missing:
        return []
    found = symbolic_shapes(inferred, {name for name, _ in missing})
    inferred.graph.value_info.extend(found.values())
    missing = [(name, node) for name, node in missing if name not in found]
    if missing:
        seen, _ = observed_shapes(model, [name for name, _ in missing], weights)
        inferred.graph.value_info.extend(seen.values())
        missing = [(name, node) for name, node in missing if name not in seen]
    return missing
