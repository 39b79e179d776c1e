"""Importance criteria on tiny textual ONNX models, checked against scores computed by hand with numpy."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import numpy_helper

import onnxprune as op
from onnxprune.axes import ChannelAxis
from onnxprune.data.calibration import calibration_batches, load_calibration
from onnxprune.errors import OnnxPruneError
from onnxprune.runtime import make_session
from onnxprune.scoring.importance import (
    CRITERIA,
    ImportanceOptions,
    compute_importance,
    normalize,
    parameter_roles,
    score_groups,
)
from onnxprune.scoring.statistics import channel_statistics

HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'
CHAIN = HEADER + """
agraph (float[N,3,6,6] x) => (float[N,5,6,6] y)
  <float[4,3,3,3] w1, float[4] b1, float[4] gamma, float[4] beta, float[4] mean, float[4] var, float[5,4,1,1] w2> {
  h = Conv <pads=[1,1,1,1]> (x, w1, b1)
  n = BatchNormalization (h, gamma, beta, mean, var)
  r = Relu (n)
  y = Conv (r, w2)
}"""
NO_BN = HEADER + """
agraph (float[N,3,6,6] x) => (float[N,5,6,6] y) <float[4,3,3,3] w1, float[5,4,1,1] w2> {
  h = Conv <pads=[1,1,1,1]> (x, w1)
  r = Relu (h)
  y = Conv (r, w2)
}"""


def build(text: str, seed: int = 0, **consts: np.ndarray) -> onnx.ModelProto:
    """Parse textual ONNX; undeclared-value inputs in <...> become random initializers (``var`` positive)."""
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(seed)
    for info in list(model.graph.value_info):
        shape = [d.dim_value for d in info.type.tensor_type.shape.dim]
        values = consts.get(info.name)
        if values is None:
            values = rng.uniform(0.5, 1.5, shape) if info.name == "var" else rng.standard_normal(shape)
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(values, dtype=np.float32), info.name))
    del model.graph.value_info[:]
    return model


def chain(seed: int = 0, **consts):
    model = build(CHAIN, seed, **consts)
    dg = op.analyse_model(model)
    return model, dg, dg.group_of("w1", 0)[0]


def weights(model) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}


def test_parameter_roles_come_from_handlers():
    _, dg, _ = chain()
    roles = parameter_roles(dg)
    assert roles == {"w1": "weight", "w2": "weight", "gamma": "scale"}  # no bias, beta or running statistics


def test_l2_is_torch_pruning_group_magnitude():
    model, dg, group = chain()
    w = weights(model)
    members = [(w["w1"] ** 2).sum(axis=(1, 2, 3)), w["gamma"] ** 2, (w["w2"] ** 2).sum(axis=(0, 2, 3))]
    expected = np.mean(members, axis=0)
    expected /= expected.mean()
    np.testing.assert_allclose(score_groups(dg)[group.id], expected, rtol=1e-6)


def test_l1_and_reductions():
    model, dg, group = chain()
    w = weights(model)
    members = np.stack([np.abs(w["w1"]).sum(axis=(1, 2, 3)), np.abs(w["gamma"]), np.abs(w["w2"]).sum(axis=(0, 2, 3))])
    for reduction, fn in (("mean", np.mean), ("sum", np.sum), ("max", np.max), ("prod", np.prod)):
        got = score_groups(dg, ImportanceOptions("l1", reduction=reduction))[group.id]
        expected = fn(members, axis=0)
        np.testing.assert_allclose(got, expected / expected.mean(), rtol=1e-6)
    per_member = score_groups(dg, ImportanceOptions("l1", member_normalizer="max", normalizer=None))[group.id]
    np.testing.assert_allclose(per_member, (members / members.max(axis=1, keepdims=True)).mean(axis=0), rtol=1e-6)


def test_bn_scale_and_fallback_without_normalisation():
    model, dg, group = chain(gamma=np.array([0.5, -2.0, 0.1, 1.0]))
    scores = score_groups(dg, ImportanceOptions("bn"))
    np.testing.assert_allclose(scores[group.id], np.array([0.5, 2.0, 0.1, 1.0]) / 0.9, rtol=1e-6)
    assert group.id not in scores.notes
    dg2 = op.analyse_model(build(NO_BN))
    scores2 = score_groups(dg2, ImportanceOptions("bn"))
    gid = dg2.group_of("w1", 0)[0].id
    assert "fell back to l2" in scores2.notes[gid]
    np.testing.assert_allclose(scores2[gid], score_groups(dg2)[gid])


def test_random_is_seeded():
    _, dg, group = chain()
    a = score_groups(dg, ImportanceOptions("random", seed=3))[group.id]
    b = score_groups(dg, ImportanceOptions("random", seed=3))[group.id]
    c = score_groups(dg, ImportanceOptions("random", seed=4))[group.id]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_fpgm_scores_the_geometric_median_filter_lowest():
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((4, 3, 3, 3)) * 3
    w1[2] = w1[[0, 1, 3]].mean(axis=0)  # the filter in the middle of the others is the redundant one
    _, dg, group = chain(w1=w1, w2=np.ones((5, 4, 1, 1)))
    scores = score_groups(dg, ImportanceOptions("fpgm"))[group.id]
    assert int(np.argmin(scores)) == 2


def test_lamp_keeps_the_l2_ranking_and_scores_the_largest_one():
    _, dg, group = chain()
    lamp = score_groups(dg, ImportanceOptions("lamp"))[group.id]
    l2 = score_groups(dg)[group.id]
    assert np.array_equal(np.argsort(lamp), np.argsort(l2))
    assert lamp.max() == pytest.approx(1.0) and np.all(lamp > 0)
    np.testing.assert_allclose(normalize(np.array([1.0, 3.0, 2.0]), "lamp"), [1 / 6, 1.0, 2 / 5])


def _intermediates(model, names, feeds):
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    return dict(zip(names, make_session(probe, "cpu").run(names, feeds)))


def test_activation_is_mean_abs_of_the_group_activations_in_chunks():
    model, dg, group = chain()
    feeds = {"x": np.random.default_rng(5).standard_normal((3, 3, 6, 6)).astype(np.float32)}
    acts = _intermediates(model, ["h", "n", "r"], feeds)
    members = [np.abs(a.astype(np.float64)).mean(axis=(0, 2, 3)) for a in acts.values()]
    expected = np.mean([m / m.mean() for m in members], axis=0)
    for chunk in (1, 16):
        got = compute_importance(dg, ImportanceOptions("activation", chunk_size=chunk), calib=feeds)[group.id]
        np.testing.assert_allclose(got, expected / expected.mean(), rtol=1e-5)


def test_wanda_is_weight_times_input_norm():
    model, dg, group = chain()
    feeds = {"x": np.random.default_rng(6).standard_normal((2, 3, 6, 6)).astype(np.float32)}
    r = _intermediates(model, ["r"], feeds)["r"].astype(np.float64)
    expected = np.abs(weights(model)["w2"]).sum(axis=(0, 2, 3)) * np.sqrt((r ** 2).sum(axis=(0, 2, 3)))
    got = compute_importance(dg, ImportanceOptions("wanda"), calib=feeds)[group.id]
    np.testing.assert_allclose(got, expected / expected.mean(), rtol=1e-5)


def test_data_criteria_warn_on_random_calibration_and_read_npz(tmp_path):
    model, dg, group = chain()
    with pytest.warns(UserWarning, match="real data"):
        compute_importance(dg, ImportanceOptions("activation"))
    x = np.random.default_rng(0).standard_normal((5, 3, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    assert np.array_equal(load_calibration(tmp_path / "calib.npz")["x"], x)
    batches = calibration_batches(model, tmp_path / "calib.npz", batch_size=2)
    assert [b["x"].shape[0] for b in batches] == [2, 2, 1]
    whole = compute_importance(dg, ImportanceOptions("activation"), calib={"x": x})[group.id]
    split = compute_importance(dg, ImportanceOptions("activation", batch_size=2), calib=tmp_path / "calib.npz")
    np.testing.assert_allclose(split[group.id], whole, rtol=1e-6)
    with pytest.raises(OnnxPruneError, match="lacks model inputs"):
        calibration_batches(model, {"y": x})


def test_channel_statistics_reads_graph_inputs_from_feeds():
    _, dg, _ = chain()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    stats = channel_statistics(dg, [ChannelAxis("x", 1)], [{"x": x}])
    np.testing.assert_allclose(stats[ChannelAxis("x", 1)].mean_abs, np.abs(x).mean(axis=(0, 2, 3)), rtol=1e-6)


def test_every_criterion_scores_every_prunable_group():
    _, dg, _ = chain()
    feeds = {"x": np.ones((1, 3, 6, 6), dtype=np.float32)}
    for name in CRITERIA:
        scores = compute_importance(dg, ImportanceOptions(name), calib=feeds)
        assert set(scores) == {g.id for g in dg.prunable_groups()}
        assert all(len(v) == dg.group(g).size and np.all(np.isfinite(v)) for g, v in scores.items())
    with pytest.raises(ValueError, match="unknown criterion"):
        ImportanceOptions("taylor")
