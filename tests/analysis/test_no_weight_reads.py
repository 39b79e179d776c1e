"""Analysis touches no weight bytes: single-file models have their large initializers memory-mapped (never copied
into the ModelProto), weights moved by Transpose/Identity/Reshape stay views of the mapping, other folds of weights
(Cast) are computed only when read, and none of it is read by loading or analysing. Values read later are the same
as eager folding gives; slicing big weights block by block gives what np.delete gives."""

from __future__ import annotations

import mmap

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import TensorProto, helper, numpy_helper

import onnxprune.apply.rewrite as rewrite
from onnxprune.analysis import analyse_model
from onnxprune.ir.reading import read_model, release_pages
from onnxprune.ir.weight_folding import DeferredValues
from onnxprune.runtime.sessions import make_session


def _mapped(values) -> bool:
    base = values
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(getattr(base, "obj", base), mmap.mmap)


def _model(path: str) -> dict[str, np.ndarray]:
    """x[N,64] -> MatMul(Transpose(w1)) -> Relu -> MatMul(Cast(w2 stored as float64)) -> y (a fold that shrinks:
    folded, unlike a widening Cast, which 'No growth' leaves in the graph). Returns the weights."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((128, 64)).astype(np.float32)  # a torch Linear weight [out, in]
    w2 = rng.standard_normal((128, 16)).astype(np.float64)
    nodes = [helper.make_node("Transpose", ["w1"], ["w1t"], perm=[1, 0], name="t1"),
             helper.make_node("MatMul", ["x", "w1t"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Cast", ["w2"], ["w2f"], to=TensorProto.FLOAT, name="cast"),
             helper.make_node("MatMul", ["r", "w2f"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return {"w1": w1, "w2": w2}


def test_inline_weights_are_mapped_not_copied(tmp_path, monkeypatch):
    monkeypatch.setattr("onnxprune.ir.reading._MAP_MIN_BYTES", 1024)
    path = str(tmp_path / "m.onnx")
    weights = _model(path)
    mapped: dict[str, np.ndarray] = {}
    model, _ = read_model(path, mapped=mapped)
    assert set(mapped) == {"w1", "w2"}
    for name, values in weights.items():
        assert _mapped(mapped[name]) and not mapped[name].flags.writeable
        np.testing.assert_array_equal(mapped[name], values)
    assert all(not init.raw_data for init in model.graph.initializer)  # the proto holds no weight bytes
    whole, _ = read_model(path)  # without ``mapped``: the full proto, as before
    assert {i.name: len(i.raw_data) for i in whole.graph.initializer} == {"w1": 128 * 64 * 4, "w2": 128 * 16 * 8}


def test_analysis_reads_no_weight_values(tmp_path, monkeypatch):
    monkeypatch.setattr("onnxprune.ir.reading._MAP_MIN_BYTES", 1024)
    path = str(tmp_path / "m.onnx")
    weights = _model(path)
    loads = []
    original = DeferredValues.load
    monkeypatch.setattr(DeferredValues, "load", lambda self: loads.append(self.name) or original(self))
    dg = analyse_model(path)
    assert len(dg.prunable_groups()) == 1  # the hidden 128 channels: w1 rows, w2 rows
    folded = {t.name: t for n in dg.graph.nodes for t in n.inputs if isinstance(t, gs.Constant)}
    assert set(folded) == {"w1t", "w2f"}  # both folds happened, as eager folding does
    assert _mapped(folded["w1t"]._values)  # Transpose(w1): a view of the file mapping, nothing copied
    assert isinstance(folded["w2f"]._values, DeferredValues)  # Cast(w2): not computed
    assert loads == []
    np.testing.assert_array_equal(folded["w1t"].values, weights["w1"].T)
    np.testing.assert_array_equal(folded["w2f"].values, weights["w2"].astype(np.float32))
    assert loads == ["w2f"]


def test_pruned_model_with_lazy_folds_runs_like_the_original(tmp_path, monkeypatch):
    from onnxprune.apply import apply_plan

    monkeypatch.setattr("onnxprune.ir.reading._MAP_MIN_BYTES", 1024)
    path = str(tmp_path / "m.onnx")
    _model(path)
    dg = analyse_model(path)
    group = dg.prunable_groups()[0]
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    before = make_session(path).run(None, {"x": x})[0]
    result = apply_plan(dg, {group.id: []})  # nothing removed: the export must compute the same function
    after = make_session(result.exported).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


def test_blockwise_slicing_matches_np_delete(tmp_path, monkeypatch):
    monkeypatch.setattr(rewrite, "_BLOCK_BYTES", 512)
    rng = np.random.default_rng(0)
    values = rng.standard_normal((40, 6, 3)).astype(np.float32)
    file = tmp_path / "w.bin"
    file.write_bytes(b"\0" * 16 + values.tobytes())
    with open(file, "rb") as f:
        buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    view = np.frombuffer(buffer, np.float32, count=values.size, offset=16).reshape(values.shape)
    for cuts in ([(0, np.array([0, 7, 39]))], [(1, np.array([2]))], [(0, np.array([3, 4])), (2, np.array([0]))]):
        expected = values
        for axis, idx in cuts:
            expected = np.delete(expected, idx, axis=axis)
        np.testing.assert_array_equal(rewrite._sliced(view, cuts), expected)
    release_pages(view, slice(5, 20))  # dropping a range of pages keeps the values readable
    np.testing.assert_array_equal(view, values)


def test_a_widening_cast_of_a_weight_stays_in_the_graph_and_still_prunes(tmp_path):
    path = str(tmp_path / "m.onnx")
    _model(path)
    model = onnx.load(path)
    w2 = next(i for i in model.graph.initializer if i.name == "w2")
    w2.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w2).astype(np.float16), "w2"))
    onnx.save_model(model, path)
    dg = analyse_model(path)
    assert len(dg.prunable_groups()) == 1
    assert any(n.op == "Cast" for n in dg.graph.nodes)  # float16 -> float32 would double the stored bytes
