"""Shapes of Loop-carried state, which ONNX's shape inference drops: its Loop rule clears the shape of every
v_initial before typing the body (the state could change shape from one iteration to the next), so the body's state
inputs keep whatever the exporter declared (TorchScript: placeholders 'h.13_dim_1'; tf2onnx: weights carried
through the loop) and the Loop's final values come out shapeless.

``type_loop_state`` gives a state the static dims of its initial value, and the final value those dims, only where
the body provably keeps them: the model is inferred again with the body inputs typed, and the result is used only
if every body output then has exactly the dims given to its body input (else the first inference stands). Symbolic
dims are left as inference found them."""

from __future__ import annotations

import onnx


def _dims(value: onnx.ValueInfoProto | None) -> list | None:
    """[int or None] of a tensor value's shape, or None when it has no shape."""
    if value is None or not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def _known(graph: onnx.GraphProto, outer: dict) -> dict:
    """name -> ValueInfoProto of every typed value visible in ``graph`` (its own and the outer scopes')."""
    known = dict(outer)
    for init in graph.initializer:
        known[init.name] = onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
    for value in [*graph.input, *graph.value_info, *graph.output]:
        known[value.name] = value
    return known


def _set_static(value: onnx.ValueInfoProto, dims: list, elem_type: int) -> None:
    """Give ``value`` the rank of ``dims`` and their static entries (symbolic entries it already has are kept)."""
    old = list(value.type.tensor_type.shape.dim) if _dims(value) is not None else []
    tensor = value.type.tensor_type
    if not tensor.elem_type:
        tensor.elem_type = elem_type
    tensor.ClearField("shape")
    shape = tensor.shape
    shape.SetInParent()
    for i, d in enumerate(dims):
        dim = shape.dim.add()
        if d is not None:
            dim.dim_value = d
        elif len(old) == len(dims) and old[i].HasField("dim_param") and not old[i].dim_param.startswith("unk__"):
            dim.dim_param = old[i].dim_param


def _loops(graph: onnx.GraphProto, outer: dict):
    """(Loop node, body, visible types) of every Loop in ``graph`` and in the bodies nested in it."""
    known = _known(graph, outer)
    for node in graph.node:
        for attr in node.attribute:
            for body in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                if node.op_type == "Loop" and attr.name == "body":
                    yield node, body, known
                yield from _loops(body, known)


def _promises(model: onnx.ModelProto) -> list:
    """Type body state inputs and final values from the initial values in place; returns (body, k, dims) for each
    body state input given static dims."""
    made = []
    for node, body, known in list(_loops(model.graph, {})):
        state = len(node.input) - 2
        if len(body.input) != 2 + state or len(body.output) < 1 + state:
            continue
        outputs = {v.name: v for v in model.graph.value_info}
        for k in range(state):
            initial = known.get(node.input[2 + k])
            init, inner, back = _dims(initial), _dims(body.input[2 + k]), _dims(body.output[1 + k])
            if init is None or all(d is None for d in init):
                continue  # nothing static to give
            if (inner is not None and len(inner) != len(init)) or (back is not None and len(back) != len(init)):
                continue
            if back is not None and any(b is not None and b != i for b, i in zip(back, init)):
                continue  # the body changes a static dim: leave it to the analysis to refuse
            elem = initial.type.tensor_type.elem_type
            _set_static(body.input[2 + k], init, elem)
            made.append((body, k, init))
            if k < len(node.output) and node.output[k] and node.output[k] in outputs:
                _set_static(outputs[node.output[k]], init, elem)
            elif k < len(node.output) and node.output[k] and node.output[k] not in known:
                model.graph.value_info.append(onnx.helper.make_tensor_value_info(node.output[k], elem, init))
    return made


def type_loop_state(inferred: onnx.ModelProto, infer) -> onnx.ModelProto:
    """``inferred`` (a model after ``infer``) with its Loop-carried state typed as the module docstring says, and
    inferred again; ``inferred`` itself when no state gains a dim or the body does not keep them."""
    typed = onnx.ModelProto()
    typed.CopyFrom(inferred)
    made = _promises(typed)
    if not made:
        return inferred
    try:
        again = infer(typed)
    except Exception:
        return inferred
    for node, body, _ in _loops(again.graph, {}):
        state = len(node.input) - 2
        for k in range(min(state, len(body.output) - 1)):
            inner, back = _dims(body.input[2 + k]), _dims(body.output[1 + k])
            if inner is not None and any(i is not None and (back is None or len(back) != len(inner) or b != i)
                                         for i, b in zip(inner, back or [None] * len(inner))):
                return inferred
    return again
