"""onnxruntime's contrib ops (``com.microsoft``, and those onnxruntime registers in the default domain beyond ONNX's
own, such as SimplifiedLayerNormalization): ONNX's shape inference does not know them, so their outputs' shapes
come from onnxruntime's symbolic shape inference, run once on the same weight-free view before ONNX's strict
inference (which then takes those shapes as given, as it does for an exporter's value_info).

onnx.checker cannot check such models fully either (full_check runs ONNX's shape inference); onnxruntime session
creation is their validity test (see ``onnxprune.validation.checks``)."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import onnx
import onnxruntime

from onnxprune.ir.reading import runtime_default_domain_ops

_DEFAULT_DOMAINS = ("", "ai.onnx")


def is_contrib(node: onnx.NodeProto, opset: int) -> bool:
    """Whether ``node`` is an op that only onnxruntime defines (a contrib op), in any domain but ai.onnx.ml."""
    if node.domain == "ai.onnx.ml":
        return False
    if node.domain not in _DEFAULT_DOMAINS:
        return True
    try:
        onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return node.op_type in runtime_default_domain_ops()
    return False


def has_contrib_ops(model: onnx.ModelProto) -> bool:
    """Whether any node of ``model``'s main graph is an onnxruntime contrib op."""
    opset = next((i.version for i in model.opset_import if i.domain in _DEFAULT_DOMAINS), 0)
    return any(is_contrib(node, opset) for node in model.graph.node)


@functools.cache
def _symbolic_shape_infer():
    """The module ``onnxruntime.tools.symbolic_shape_infer``, loaded from its file without running
    ``onnxruntime/tools/__init__.py``, which imports torch whenever it is installed (0.2 GB of memory for a helper
    nothing here uses: a third of a 150 M-parameter decoder's size in a prune's peak). ImportError without it."""
    name = "onnxruntime.tools.symbolic_shape_infer"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(onnxruntime.__file__).parent / "tools" / "symbolic_shape_infer.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or not path.is_file():
        raise ImportError(f"onnxruntime's symbolic shape inference is missing ({path})")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def symbolic_inference():
    """onnxruntime's ``SymbolicShapeInference`` (ImportError without onnxruntime's tools), with its
    GatherBlockQuantized rule corrected: onnxruntime reads it as a plain Gather over ``axis``, but the op gathers
    over ``gather_axis`` and, for uint8 data of ``bits`` < 8, its last axis holds 8 / bits values per byte (a packed
    [vocab, hidden / 2] table gives [..., hidden], not [..., hidden / 2]: the wrong width then fails every consumer)."""
    module = _symbolic_shape_infer()
    get_attribute, handle_negative_axis = module.get_attribute, module.handle_negative_axis
    inference = module.SymbolicShapeInference(2**31 - 1, True, False, 0)

    def gather_block_quantized(node: onnx.NodeProto) -> None:
        data = list(inference._get_shape(node, 0))
        axis = handle_negative_axis(get_attribute(node, "gather_axis", 0), len(data))
        if inference.known_vi_[node.input[0]].type.tensor_type.elem_type == onnx.TensorProto.UINT8 and data \
                and isinstance(data[-1], int):
            data[-1] *= 8 // get_attribute(node, "bits", 4)
        elem_type = inference.known_vi_[node.input[2]].type.tensor_type.elem_type
        shape = data[:axis] + list(inference._get_shape(node, 1)) + data[axis + 1:]
        inference.known_vi_[node.output[0]].CopyFrom(onnx.helper.make_tensor_value_info(node.output[0], elem_type,
                                                                                         shape))

    inference.dispatcher_["GatherBlockQuantized"] = gather_block_quantized
    return inference


def with_contrib_shapes(view: onnx.ModelProto) -> onnx.ModelProto:
    """``view`` with value_info added for the outputs of its contrib ops (and what follows them) from onnxruntime's
    symbolic shape inference, where ``view`` states none; ``view`` itself when it has no contrib op or onnxruntime's
    tool is unavailable or fails (then ONNX's inference reports what it cannot infer)."""
    if not has_contrib_ops(view):
        return view
    try:
        # SymbolicShapeInference.infer_shapes, less its habit of saving the model into the working directory when
        # some shape stays unknown: a partial result is fine here (ONNX's strict inference judges the rest).
        inference = symbolic_inference()
        inference._preprocess(view)
        while inference.run_:
            inference._infer_impl()
        inference._update_output_from_vi()
        inferred = inference.out_mp_
    except Exception:
        return view
    known = {v.name for v in view.graph.value_info} | {v.name for v in view.graph.output}
    merged = onnx.ModelProto()
    merged.CopyFrom(view)  # the model's own value_info (an exporter's shapes) wins over what was inferred here
    merged.graph.value_info.extend(v for v in inferred.graph.value_info if v.name not in known
                                   and v.type.tensor_type.HasField("shape"))
    return merged
