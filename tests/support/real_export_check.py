"""One check for every real-export case (issue 8): prune, write, and hold the written model to what a user relies
on. ``prune_and_check`` runs ``onnxprune.prune``, saves the model, and asserts: the structural validation passed
(mask oracle when the plan is mask-exact), ``onnx.checker.check_model(full_check=True)`` on the file, onnxruntime
runs it at each of the given dynamic sizes with the output dims those sizes imply, the mask oracle agrees at every
one of those sizes (not only at the size validation picked), and ``assert_keeps_model_fields`` holds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx

import onnxprune as op
from onnxprune.runtime import make_session
from onnxprune.runtime.inputs import integer_bounds, random_inputs
from onnxprune.validation.comparison import compare


def _dims(value_info: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def assert_keeps_model_fields(original: onnx.ModelProto, written: onnx.ModelProto) -> None:
    """Field by field, what pruning must not change: metadata_props, producer name/version, model_version,
    doc_string, domain, opset imports, model-local functions, graph name and doc_string, inputs and outputs (names,
    element types, every dim with its dim_param), and the name and op type of every node that survived."""
    assert {e.key: e.value for e in written.metadata_props} == {e.key: e.value for e in original.metadata_props}
    for field in ("producer_name", "producer_version", "model_version", "doc_string", "domain", "ir_version"):
        assert getattr(written, field) == getattr(original, field), field
    assert sorted((i.domain, i.version) for i in written.opset_import) == \
        sorted((i.domain, i.version) for i in original.opset_import)
    assert [(f.domain, f.name) for f in written.functions] == [(f.domain, f.name) for f in original.functions]
    assert (written.graph.name, written.graph.doc_string) == (original.graph.name, original.graph.doc_string)
    for mine, theirs in ((written.graph.input, original.graph.input), (written.graph.output, original.graph.output)):
        initializers = {t.name for t in original.graph.initializer}
        theirs = [v for v in theirs if v.name not in initializers]
        assert [(v.name, v.type.tensor_type.elem_type, _dims(v)) for v in mine] == \
            [(v.name, v.type.tensor_type.elem_type, _dims(v)) for v in theirs]
    kinds = {n.name: n.op_type for n in original.graph.node}
    renamed = [(n.name, n.op_type) for n in written.graph.node if n.op_type != "Constant" and n.name
               and kinds.get(n.name, n.op_type) != n.op_type]
    assert not renamed, f"nodes whose name now labels another op: {renamed[:5]}"
    assert sum(n.name in kinds for n in written.graph.node) >= 0.5 * len(written.graph.node), \
        "most written nodes should keep their original names"


def feeds_at(session, model: onnx.ModelProto, dims: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds with every symbolic dim set from ``dims`` (by dim_param) and integer inputs below the
    tables they index."""
    return random_inputs(session, batch=dims.get("batch", 2), seed=seed, dims=dims, bounds=integer_bounds(model))


def expected_shape(value_info: onnx.ValueInfoProto, dims: dict[str, int]) -> tuple:
    """The output shape a graph output declares, its named dims filled from ``dims`` (None where not given)."""
    return tuple(d if isinstance(d, int) else dims.get(d) for d in _dims(value_info))


def prune_and_check(source: str | os.PathLike, out_dir: Path, sizes: list[dict[str, int]], *,
                    expect_pruned: bool = True, oracle: bool = True, **options) -> op.Pruned:
    """Prune ``source`` with ``options`` (``PruneOptions`` fields), write it under ``out_dir`` and check it as the
    module docstring says. ``sizes``: at least two assignments of the graph's symbolic dims. ``oracle``: the plan
    must be mask-exact and match the oracle (else only the pipeline's drift check is required)."""
    assert len(sizes) >= 2, "check at two dynamic sizes at least"
    original = onnx.load(os.fspath(source))
    pruned = op.prune(source, **options)
    assert bool(pruned.plan.groups) == expect_pruned, (pruned.report["groups"], pruned.report["notes"])
    out = Path(out_dir) / (Path(source).stem + ".pruned.onnx")
    pruned.save(out)
    onnx.checker.check_model(os.fspath(out), full_check=True)
    written = onnx.load(os.fspath(out))
    assert_keeps_model_fields(original, written)
    if not expect_pruned:
        return pruned
    assert pruned.validation["passed"], pruned.validation
    session = make_session(os.fspath(out))
    batches = [feeds_at(session, written, dims, seed=k) for k, dims in enumerate(sizes)]
    for dims, feeds in zip(sizes, batches):
        for value_info, result in zip(written.graph.output, session.run(None, feeds)):
            want = expected_shape(value_info, dims)
            assert all(w is None or w == g for w, g in zip(want, result.shape)), (value_info.name, want, result.shape)
    if oracle:
        assert pruned.plan.exact and pruned.validation["criterion"] == "tolerance", pruned.validation
        masked = op.masked_model(pruned.plan.depgraph, pruned.plan.groups)
        comparison = compare(masked, os.fspath(out), batches, oracle=True, exact=True)
        assert comparison.passed, comparison.summary()
    return pruned
