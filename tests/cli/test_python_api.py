"""The one-call Python API: onnxprune.prune(model, ratio=..., calib=...) returns the model, plan, figures and
validation, writes nothing until save(); calibration may be an onnxruntime CalibrationDataReader."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader

import onnxprune as op
from tests.support import bad_inputs


class Reader(CalibrationDataReader):
    """Batches of 8 random images, as a user's static-quantization reader yields them."""

    def __init__(self, count: int = 40):
        x = np.random.default_rng(0).standard_normal((count, 3, 8, 8)).astype(np.float32)
        self.batches = iter([{"x": x[k:k + 8]} for k in range(0, count, 8)])

    def get_next(self):
        return next(self.batches, None)


def test_prune_in_memory_then_save(tmp_path):
    source = bad_inputs._model_file(tmp_path)
    before = source.read_bytes()
    pruned = op.prune(source, ratio=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]  # nothing written yet
    assert pruned.macs["after"] < pruned.macs["before"] and pruned.params["after"] < pruned.params["before"]
    assert pruned.validation["passed"] and pruned.validation["oracle"]
    onnx.checker.check_model(pruned.model, full_check=True)
    pruned.save(tmp_path / "out.onnx", report=str(tmp_path / "report.json"), plan=str(tmp_path / "plan.json"))
    assert json.loads((tmp_path / "report.json").read_text())["output"] == str(tmp_path / "out.onnx")
    assert source.read_bytes() == before


def test_prune_takes_a_model_proto_and_a_calibration_data_reader(tmp_path):
    model = onnx.load(bad_inputs._model_file(tmp_path))
    pruned = op.prune(model, ratio=0.3, calib=Reader())
    assert pruned.report["calibration"] == {"fit_samples": 32, "holdout_samples": 8}
    rows = {r["model"]: r for r in pruned.report["fidelity"]["rows"]}
    assert set(rows) == {"original", "pruned", "pruned + reconstructed"}
    assert rows["pruned + reconstructed"]["mean_abs_diff"] <= rows["pruned"]["mean_abs_diff"]
    assert pruned.plan.refit and pruned.report["reconstruction"]["layers"]
