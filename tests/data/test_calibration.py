"""Calibration data as the ecosystem gives it: .npz files (plain, or variable-shape samples as <i>__<input>),
directories of them, feed dicts and onnxruntime's CalibrationDataReader; batches the model accepts (a model fixed at
batch 1 gets one sample at a time); a seeded held-out part; one-line CalibrationErrors that say what to do."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from onnxruntime.quantization import CalibrationDataReader

from onnxprune.data import prepare_calibration
from onnxprune.errors import CalibrationError, OnnxPruneError
from onnxprune.runtime import make_session


def relu_model(shape, dtype=onnx.TensorProto.FLOAT) -> onnx.ModelProto:
    node = helper.make_node("Relu" if dtype == onnx.TensorProto.FLOAT else "Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", dtype, shape)],
                              [helper.make_tensor_value_info("y", dtype, shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def samples(batches, name="x") -> int:
    return sum(b[name].shape[0] for b in batches)


def test_a_model_fixed_at_batch_one_gets_one_sample_at_a_time(tmp_path):
    model = relu_model([1, 3, 4])
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).standard_normal((8, 3, 4)), labels=np.arange(8))
    calib = prepare_calibration(model, tmp_path / "calib.npz", holdout=0.25)
    assert [b["x"].shape for b in calib.fit] == [(1, 3, 4)] * 6 and len(calib.holdout) == 2
    assert calib.fit[0]["x"].dtype == np.float32  # float64 data is cast to the input's float type
    session = make_session(model, "cpu")
    for batch in calib.fit + calib.holdout:
        session.run(None, batch)


def test_holdout_is_seeded_disjoint_and_keeps_order():
    model = relu_model(["N", 2])
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    a = prepare_calibration(model, {"x": x}, holdout=0.2, batch_size=4, seed=3)
    b = prepare_calibration(model, {"x": x}, holdout=0.2, batch_size=4, seed=3)
    fit = np.concatenate([f["x"][:, 0] for f in a.fit])
    held = np.concatenate([f["x"][:, 0] for f in a.holdout])
    assert [f["x"].shape[0] for f in a.fit] == [4, 4] and a.holdout_samples == 2 and a.fit_samples == 8
    assert set(fit) | set(held) == set(x[:, 0]) and not set(fit) & set(held)
    assert list(fit) == sorted(fit) and np.array_equal(held, np.concatenate([f["x"][:, 0] for f in b.holdout]))


def test_variable_shape_samples_from_indexed_npz_files_in_a_directory(tmp_path):
    model = relu_model(["N", "T", 3])
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", **{"0__x": rng.standard_normal((1, 5, 3)), "1__x": rng.standard_normal((2, 5, 3))})
    np.savez(tmp_path / "b.npz", **{"0__x": rng.standard_normal((1, 7, 3))})
    calib = prepare_calibration(model, tmp_path, holdout=0.0, batch_size=8)
    assert [b["x"].shape for b in calib.fit] == [(3, 5, 3), (1, 7, 3)]  # equal shapes stacked, others apart


class Reader(CalibrationDataReader):
    def __init__(self, count: int):
        self.items = iter([{"x": np.full((1, 2), k, np.float32)} for k in range(count)])

    def get_next(self):
        return next(self.items, None)


def test_feed_dicts_and_calibration_data_readers():
    model = relu_model(["N", 2])
    from_reader = prepare_calibration(model, Reader(5), holdout=0.0, batch_size=2)
    from_list = prepare_calibration(model, [{"x": np.full((1, 2), k, np.float32)} for k in range(5)], holdout=0.0,
                                    batch_size=2)
    assert [b["x"].shape[0] for b in from_reader.fit] == [2, 2, 1]
    for r, f in zip(from_reader.fit, from_list.fit):
        assert np.array_equal(r["x"], f["x"])


@pytest.mark.parametrize("data, message", [
    ({"y": np.zeros((4, 3, 4))}, "lacks model inputs"),
    ({"x": np.zeros((4, 12))}, "model's layout"),
    ({"x": np.zeros((4, 3, 5))}, "size 5 on axis 2"),
    ({"x": np.zeros((4, 3, 4), np.int64)}, "holds int64 values"),
    ([{"x": np.zeros((1, 3, 4))}, "not a dict"], "not a dict of input name"),
])
def test_data_that_does_not_fit_is_a_one_line_error(data, message):
    with pytest.raises(CalibrationError, match=message) as info:
        prepare_calibration(relu_model(["N", 3, 4]), data)
    assert "\n" not in str(info.value) and isinstance(info.value, OnnxPruneError)


def test_bad_files_and_sample_counts(tmp_path):
    model = relu_model(["N", 3])
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(CalibrationError, match="cannot read calibration arrays"):
        prepare_calibration(model, tmp_path / "bad.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no .npz files"):
        prepare_calibration(model, tmp_path / "empty")
    two = helper.make_graph([helper.make_node("Add", ["x", "z"], ["y"])], "g",
                            [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["N", 3]) for n in "xz"],
                            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(two, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(CalibrationError, match="disagree on the number of samples"):
        prepare_calibration(model, {"x": np.zeros((4, 3)), "z": np.zeros((5, 3))})


def test_a_fixed_batch_larger_than_one_drops_what_cannot_fill_a_batch():
    model = relu_model([4, 2])
    with pytest.warns(UserWarning, match="2 calibration samples left out"):
        calib = prepare_calibration(model, {"x": np.zeros((10, 2), np.float32)}, holdout=0.0)
    assert [b["x"].shape for b in calib.fit] == [(4, 2), (4, 2)]
