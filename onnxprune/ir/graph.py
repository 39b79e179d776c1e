"""Small helpers on onnx-graphsurgeon graphs that gs itself lacks: copies that keep value types, fresh names, and
walks over the bodies of If/Loop/Scan nodes (gs's ``tensors()`` sees one graph; outer-scope tensors read inside a
body are the same gs objects as outside, so a walk sees each tensor once)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx
import onnx_graphsurgeon as gs


def subgraphs(node: gs.Node) -> list[tuple[str, gs.Graph]]:
    """(attribute name, body) of every graph attribute of ``node`` (If's two branches, Loop's and Scan's body)."""
    return [(name, value) for name, value in node.attrs.items() if isinstance(value, gs.Graph)]


def walk(graph: gs.Graph) -> Iterator[tuple[gs.Node, gs.Graph]]:
    """(node, graph that holds it) for every node of ``graph`` and, recursively, of its nodes' bodies; a node's
    bodies come right after it."""
    for node in graph.nodes:
        yield node, graph
        for _, body in subgraphs(node):
            yield from walk(body)


def all_nodes(graph: gs.Graph) -> Iterator[gs.Node]:
    """Every node of ``graph`` and of the bodies nested in it."""
    return (node for node, _ in walk(graph))


def all_graphs(graph: gs.Graph) -> list[gs.Graph]:
    """``graph`` and every body nested in it, outermost first."""
    return [graph] + [body for node in all_nodes(graph) for _, body in subgraphs(node)]


def all_tensors(graph: gs.Graph) -> dict[str, gs.Tensor]:
    """``graph.tensors()`` extended by the tensors of every nested body (outer tensors keep their entry)."""
    tensors = graph.tensors()
    for body in all_graphs(graph)[1:]:
        for name, tensor in body.tensors().items():
            tensors.setdefault(name, tensor)
    return tensors


def owner_graph(graph: gs.Graph, node: gs.Node) -> gs.Graph:
    """The graph (``graph`` or one of its bodies) whose node list holds ``node``."""
    return next(g for n, g in walk(graph) if n is node)


def unique_body_names(graph: gs.Graph) -> None:
    """Rename body-local tensors whose name is used elsewhere in the model (the two branches of an If may both call
    their output 't'): analysis keys axes by tensor name. Renaming a body's own inputs, outputs and values keeps
    the model's meaning (bodies bind them by position)."""
    bodies = all_graphs(graph)
    if len(bodies) == 1:
        return
    outer = graph.tensors()
    taken, seen = set(outer), {id(t) for t in outer.values()}
    for body in bodies[1:]:
        local = list(body.inputs) + [t for n in body.nodes for t in n.outputs]
        local += [t for n in body.nodes for t in n.inputs if isinstance(t, gs.Constant)]
        for tensor in local:
            if not tensor.name or id(tensor) in seen:
                continue
            seen.add(id(tensor))
            if tensor.name in taken:
                k = 1
                while f"{tensor.name}_{body.name}{k}" in taken:
                    k += 1
                tensor.name = f"{tensor.name}_{body.name}{k}"
            taken.add(tensor.name)


def proto_graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """``graph`` and every If/Loop/Scan (or other) body inside it, nested ones included."""
    found = [graph]
    for node in graph.node:
        for attr in node.attribute:
            for body in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                found.extend(proto_graphs(body))
    return found


def _static_dims(value: onnx.ValueInfoProto) -> int:
    """How many dims of a value's shape are static (-1 without a shape)."""
    tensor = value.type.tensor_type
    return sum(d.HasField("dim_value") for d in tensor.shape.dim) if tensor.HasField("shape") else -1


def copy_body_value_info(source: onnx.GraphProto, target: onnx.GraphProto) -> None:
    """Give every body of ``target`` the value_info of the same body in ``source`` (shape inference's result; nodes
    are matched by their outputs): ONNX writes what it infers inside bodies there, not at the top."""
    inferred = {tuple(n.output): n for n in source.node if n.attribute}
    for dst in target.node:
        src = inferred.get(tuple(dst.output))
        if src is None or src.op_type != dst.op_type:
            continue
        for a, b in zip(src.attribute, dst.attribute):
            pairs = [(a.g, b.g)] if a.type == onnx.AttributeProto.GRAPH else list(zip(a.graphs, b.graphs))
            for sub_src, sub_dst in pairs:
                outputs = {o.name for o in sub_dst.output}
                del sub_dst.value_info[:]
                sub_dst.value_info.extend(v for v in sub_src.value_info if v.name not in outputs)
                for out, found in [*zip(sub_dst.input, sub_src.input), *zip(sub_dst.output, sub_src.output)]:
                    if _static_dims(found) > _static_dims(out) or (
                            not out.type.tensor_type.HasField("shape") and found.type.tensor_type.HasField("shape")):
                        out.CopyFrom(found)  # inference merged what the body declared: it knows at least as much
                copy_body_value_info(sub_src, sub_dst)


def copy_graph(graph: gs.Graph) -> gs.Graph:
    """``graph.copy()`` that also keeps each variable's value type (gs drops sequence types when copying) and keeps
    a constant read both outside and inside a body one tensor (gs gives each body its own copy of every constant it
    reads; loading made body-local names unique, so one name is one constant)."""
    copy = graph.copy()
    constants = {name: t for name, t in copy.tensors().items() if isinstance(t, gs.Constant)}
    for node in (n for body in all_graphs(copy)[1:] for n in body.nodes):
        for k, tensor in enumerate(node.inputs):
            if isinstance(tensor, gs.Constant):
                shared = constants.setdefault(tensor.name, tensor)
                if shared is not tensor:
                    node.inputs[k] = shared
    types = {name: t.type for name, t in all_tensors(graph).items() if isinstance(t, gs.Variable)}
    for name, tensor in all_tensors(copy).items():
        if isinstance(tensor, gs.Variable) and name in types:
            tensor.type = types[name]
    return copy


def fresh_name(graph: gs.Graph, base: str) -> str:
    """``<base>_prunedN`` with the smallest N that no tensor of ``graph`` (bodies included) uses."""
    taken = all_tensors(graph)
    k = 1
    while f"{base}_pruned{k}" in taken:
        k += 1
    return f"{base}_pruned{k}"
