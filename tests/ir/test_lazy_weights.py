"""Lazy slicing of big models' weights (onnxprune.apply): a model that came with external data is pruned without a
sliced copy of its weights held in memory; export slices each weight when it writes it, and the result is the same
model, bit for bit, as eager slicing gives. Memory is measured with tracemalloc (numpy reports its allocations to
it), with margins of several times what is expected either way."""

from __future__ import annotations

import hashlib
import tracemalloc

import numpy as np
import onnx
import pytest

import onnxprune as op
from onnxprune.ir.weight_folding import DeferredValues
from onnxprune.runtime import run
from tests.support.tiny_models import relu_mlp

WIDTH = 512  # each hidden weight is 512 x 512 float32 = 1 MiB, the smallest size sliced lazily
LAYERS = 8
WEIGHT_BYTES = WIDTH * WIDTH * 4


def _mlp() -> onnx.ModelProto:
    return relu_mlp(WIDTH, LAYERS, scale=0.05)


@pytest.fixture()
def external_model(tmp_path):
    path = tmp_path / "in" / "mlp.onnx"
    path.parent.mkdir()
    onnx.save_model(_mlp(), str(path), save_as_external_data=True, location="mlp.onnx.data", size_threshold=1024)
    return path


def _half_plan(dg) -> dict[int, list[int]]:
    """Every other unit of every prunable group (all hidden widths)."""
    return {g.id: list(range(0, g.size, 2)) for g in dg.prunable_groups()}


def _digest(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_sliced_weights_are_deferred_and_equal_eager_slices(external_model):
    dg = op.analyse_model(external_model)
    plan = _half_plan(dg)
    assert len(plan) == LAYERS
    lazy = op.apply_plan(dg, plan)
    hidden = [f"w{k}" for k in range(LAYERS)]  # 1 MiB each (the output layer's, 8 KiB, is sliced at once)
    constants = {t.name: t for t in lazy.graph.tensors().values() if t.name in hidden}
    assert all(isinstance(constants[name]._values, DeferredValues) for name in hidden)
    exported = lazy.exported
    assert exported.data_dir is not None
    assert all(isinstance(constants[name]._values, DeferredValues) for name in hidden)  # export kept none in memory
    eager = op.apply_plan(op.analyse_model(onnx.load(str(external_model))), plan)  # a ModelProto: sliced at once
    eager_values = {t.name: t._values for t in eager.graph.tensors().values() if t.name in hidden}
    assert all(isinstance(v, np.ndarray) for v in eager_values.values())
    for name in hidden:
        assert constants[name].shape == eager_values[name].shape
        assert np.array_equal(constants[name].values, eager_values[name]), name  # read: sliced now
    x = np.random.default_rng(1).standard_normal((3, WIDTH)).astype(np.float32)
    assert np.array_equal(run(exported, {"x": x})[0], run(eager.exported, {"x": x})[0])


def test_no_sliced_copy_is_held_while_applying_and_exporting(external_model):
    dg = op.analyse_model(external_model)
    plan = _half_plan(dg)
    total = sum(np.asarray(dg.tensors[f"w{k}"].values).nbytes for k in range(LAYERS + 1))
    pruned = sum(np.asarray(t.values).nbytes for t in op.apply_plan(  # eager slices: what an eager apply would hold
        op.analyse_model(onnx.load(str(external_model))), plan).graph.tensors().values()
        if t.name.startswith("w"))
    assert pruned > 2 * WEIGHT_BYTES and total > 7 * WEIGHT_BYTES
    tracemalloc.start()
    try:
        result = op.apply_plan(dg, plan)
        applied, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        exported = result.exported
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert exported.data_dir is not None
    assert applied < pruned / 4, (applied, pruned)  # eager slicing holds all of ``pruned`` here
    assert held < pruned / 4, (held, pruned)
    # one weight sliced at a time (slicing one takes up to about its own size); eager slicing holds all of ``pruned``
    assert peak < 2 * WEIGHT_BYTES < pruned, (peak, pruned)


def test_prune_validates_and_saves_without_touching_the_input(external_model, tmp_path):
    before = _digest(external_model.parent)
    pruned = op.prune(external_model, ratio=0.5)
    assert pruned.validation["passed"] and pruned.validation["oracle"], pruned.validation
    out = tmp_path / "out" / "pruned.onnx"
    out.parent.mkdir()
    pruned.save(out)
    onnx.checker.check_model(str(out), full_check=True)
    eager = op.prune(onnx.load(str(external_model)), ratio=0.5, validate=False)
    x = np.random.default_rng(2).standard_normal((2, WIDTH)).astype(np.float32)
    assert np.array_equal(run(str(out), {"x": x})[0], run(eager.model, {"x": x})[0])
    assert _digest(external_model.parent) == before


def test_models_without_external_data_are_sliced_at_once(external_model):
    dg = op.analyse_model(onnx.load(str(external_model)))
    result = op.apply_plan(dg, _half_plan(dg))
    assert all(isinstance(t._values, np.ndarray) for t in result.graph.tensors().values() if t.name.startswith("w"))
