"""The drift criterion on a model trained here (scikit-learn's digits, a second on CPU): an MLP whose hidden width
goes through a LayerNorm, so pruning it is not mask-exact. prune judges it on the --calib samples, and the drift it
reports is 1 - the top-1 agreement of the pruned and original models on exactly those samples."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from onnxprune.runtime import make_session
from tests.support.plan_check import prune_and_revalidate


@pytest.fixture(scope="module")
def digits_layernorm(tmp_path_factory):
    """(model path, calibration npz path, test x, test y): 64 -> Linear 48 -> LayerNorm -> ReLU -> Linear 10."""
    data = load_digits()
    x, y = (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48), nn.LayerNorm(48), nn.ReLU(), nn.Linear(48, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[:1200]), torch.from_numpy(y[:1200])
    for _ in range(40):
        for batch in torch.randperm(len(xt)).split(100):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(xt[batch]), yt[batch]).backward()
            optimiser.step()
    folder = tmp_path_factory.mktemp("digits_ln")
    path, calib = folder / "digits_ln.onnx", folder / "calib.npz"
    torch.onnx.export(model.eval(), (torch.zeros(2, 64),), str(path), dynamo=False, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}}, opset_version=17)
    np.savez(calib, x=x[1200:1264])
    return str(path), str(calib), x[1264:], y[1264:]


def predictions(path, x: np.ndarray) -> np.ndarray:
    return make_session(str(path), "cpu").run(None, {"x": x})[0].argmax(axis=1)


@pytest.mark.parametrize("ratio", [0.125, 0.5])
def test_drift_is_top1_disagreement_on_the_calibration_samples(digits_layernorm, tmp_path, ratio):
    path, calib, x_test, y_test = digits_layernorm
    accuracy = float(np.mean(predictions(path, x_test) == y_test))
    assert accuracy > 0.9  # the premise: a trained model
    out = tmp_path / "pruned.onnx"
    pruned = prune_and_revalidate(path, out, "--ratio", ratio, "--calib", calib, "--max-drift", "1",
                                  "--no-reconstruct")
    validation = pruned.validation
    assert not pruned.plan["exact"] and validation["criterion"] == "drift" and validation["passed"]
    assert validation["inputs"] == "64 calibration samples"
    x_calib = np.load(calib)["x"]
    agreement = float(np.mean(predictions(path, x_calib) == predictions(out, x_calib)))
    assert validation["top1_agreement"] == pytest.approx(agreement)
    assert validation["drift"] == pytest.approx(1 - agreement)
    strict = prune_and_revalidate(path, tmp_path / "strict.onnx", "--ratio", ratio, "--calib", calib,
                                  "--no-reconstruct")
    assert strict.validation["passed"] == (agreement >= 0.99) == (strict.result.exit_code == 0)
    print(json.dumps({"ratio": ratio, "accuracy": accuracy, "pruned_accuracy":
                      float(np.mean(predictions(out, x_test) == y_test)), "calib_top1_agreement": agreement}))
