"""The big-model path on small models: external data memory-mapped on load, weights exported to an external data
file instead of copied into the proto (export_graph above ``export.EXTERNAL_THRESHOLD``, lowered here), checked by path,
saved as ``<name>.data`` atomically, nothing left behind on failure. benchmarks/big_model.py runs it at 3 GB."""

from __future__ import annotations

import mmap
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

import onnxprune as op
from onnxprune.ir import export, saving
from onnxprune.runtime import run
from onnxprune.validation.oracle import compare
from tests.support.checked import checked_prune
from tests.support.tiny_models import relu_mlp


def _mlp(width: int = 64, layers: int = 3) -> onnx.ModelProto:
    return relu_mlp(width, layers, scale=0.2, gemm=True)


@pytest.fixture()
def external_model(tmp_path, monkeypatch):
    """A 3-layer MLP saved with external data; every weight is large enough to be memory-mapped."""
    monkeypatch.setattr("onnxprune.ir.reading._MAP_MIN_BYTES", 1024)
    path = tmp_path / "in" / "mlp.onnx"
    path.parent.mkdir()
    onnx.save_model(_mlp(), str(path), save_as_external_data=True, location="mlp.onnx.data", size_threshold=1024)
    return path


def _mapped(array: np.ndarray) -> bool:
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(getattr(base, "obj", base), mmap.mmap)


def test_external_data_is_memory_mapped_and_the_output_keeps_external_data(external_model, tmp_path):
    before = {p.name: p.read_bytes() for p in external_model.parent.iterdir()}
    dg = op.analyse_model(external_model)
    assert _mapped(dg.tensors["w1"].values) and not dg.tensors["w1"].values.flags.writeable
    group = dg.group_of("w0", 0)[0]
    plan = {group.id: list(range(0, group.size, 2))}
    result = checked_prune(dg, plan)
    assert result.exported.data_dir is not None  # the input had external data: so does the export
    assert compare(op.masked_model(dg, plan), result.model).passed
    out = tmp_path / "out" / "pruned.onnx"
    out.parent.mkdir()
    saving.save_model(result.exported, out, source=external_model)
    assert sorted(p.name for p in out.parent.iterdir()) == ["pruned.onnx", "pruned.onnx.data"]
    onnx.checker.check_model(str(out), full_check=True)
    x = np.random.default_rng(1).standard_normal((2, 64)).astype(np.float32)
    assert np.array_equal(run(str(out), {"x": x})[0], run(result.model, {"x": x})[0])
    assert {p.name: p.read_bytes() for p in external_model.parent.iterdir()} == before


def test_models_over_the_threshold_are_exported_with_external_data(monkeypatch, tmp_path):
    """The >2 GB path with a 1 kB threshold: export_graph writes weights to a temporary data file, the checker and
    onnxruntime read it there, save_model writes model + data and checks them by path."""
    monkeypatch.setattr(export, "EXTERNAL_THRESHOLD", 1024)
    model = _mlp()
    dg = op.analyse_model(model)
    group = dg.group_of("w1", 0)[0]
    plan = {group.id: [1, 2, 3]}
    result = checked_prune(dg, plan)
    directory = result.exported.data_dir
    assert directory is not None and result.exported.proto.ByteSize() < 4096
    initializers = result.exported.proto.graph.initializer
    assert all(t.data_location == TensorProto.EXTERNAL for t in initializers if len(t.dims) == 2)
    assert compare(op.masked_model(dg, plan), result.model).passed
    out = tmp_path / "big.onnx"
    saving.save_model(result.exported, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    onnx.checker.check_model(str(out))
    loaded = onnx.load(str(out))
    assert not loaded.metadata_props  # nothing of export's bookkeeping reaches the file
    assert numpy_helper.to_array([t for t in loaded.graph.initializer if t.name == "w1"][0]).shape == (61, 64)


def test_a_failed_save_leaves_no_file_behind(monkeypatch, tmp_path):
    monkeypatch.setattr(export, "EXTERNAL_THRESHOLD", 1024)
    result = checked_prune(op.analyse_model(_mlp()), {})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(saving.onnx.checker, "check_model", broken)
    with pytest.raises(OSError, match="disk full"):
        saving.save_model(result.exported, tmp_path / "big.onnx")
    assert list(tmp_path.iterdir()) == []


def test_output_over_the_inputs_external_data_is_refused(external_model):
    model = checked_prune(op.analyse_model(external_model), {}).model
    with pytest.raises(op.OnnxPruneError, match="is the input file"):
        saving.save_model(model, external_model, source=external_model)
    with pytest.raises(op.OnnxPruneError, match="is a file the input reads"):
        saving.save_model(model, external_model.with_name("mlp.onnx.data"), source=external_model)
    other = external_model.with_name("other.onnx")  # reads mlp.onnx.data too: writing mlp.onnx + .data would hit it
    onnx.save_model(onnx.load(str(external_model), load_external_data=False), str(other))
    with pytest.raises(op.OnnxPruneError, match="is a file the input reads"):
        saving.save_model(model, external_model, source=other)
    assert sorted(p.name for p in external_model.parent.iterdir()) == ["mlp.onnx", "mlp.onnx.data", "other.onnx"]


@pytest.mark.parametrize("damage,match", [
    ("short", "is too short"), ("missing", "is missing"), ("outside", "outside the model's directory"),
])
def test_damaged_memory_mapped_external_data_is_a_clear_error(external_model, damage, match):
    data = external_model.with_name("mlp.onnx.data")
    if damage == "short":
        data.write_bytes(data.read_bytes()[:5000])
    elif damage == "missing":
        os.remove(data)
    else:
        model = onnx.load(str(external_model), load_external_data=False)
        for init in model.graph.initializer:
            for entry in init.external_data:
                if entry.key == "location":
                    entry.value = "../mlp.onnx.data"
        onnx.save_model(model, str(external_model))
    with pytest.raises(op.ModelLoadError, match=match):
        op.analyse_model(external_model)


def test_a_deferred_fold_reading_a_constant_written_before_it_exports_with_external_data(tmp_path, monkeypatch):
    import onnx_graphsurgeon as gs

    from onnxprune.ir.weight_folding import DeferredValues

    monkeypatch.chdir(tmp_path)  # a relative external location would be looked up here, and missing
    bias = gs.Constant("bias", np.arange(4096, dtype=np.float32))
    doubled = gs.Constant("doubled", DeferredValues("doubled", [4096], np.float32, lambda: bias.values * 2))
    x = gs.Variable("x", dtype=np.float32, shape=[4096])
    mid, y = gs.Variable("mid", dtype=np.float32), gs.Variable("y", dtype=np.float32)
    graph = gs.Graph(nodes=[gs.Node("Add", inputs=[x, bias], outputs=[mid]),
                            gs.Node("Add", inputs=[mid, doubled], outputs=[y])],
                     inputs=[x], outputs=[y], opset=17)
    exported = export.export_graph(graph, external_threshold=0)
    assert exported.data_dir is not None
    exported.proto.ir_version = 9  # what onnxruntime reads; export_graph keeps the loaded model's otherwise
    feed = {"x": np.ones(4096, np.float32)}
    np.testing.assert_array_equal(run(exported, feed)[0], 1 + 3 * np.arange(4096, dtype=np.float32))
