"""Reconstruction is exact where the math says it must be, on small hand-built models: a removed channel that is a
linear combination of kept ones is reconstructed with zero error by every consumer kind (Conv, Gemm, MatMul,
LSTM), a constant channel is compensated through the bias (added where the consumer had none), and consumers that
cannot be refit are named in a note."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnxprune as op
from onnxprune.axes import ChannelAxis
from onnxprune.ir.export import export_graph
from onnxprune.reconstruct import ReconstructOptions, reconstruct
from onnxprune.runtime import make_session
from onnxprune.validation.checks import check_model
from onnxprune.validation.oracle import compare

RNG = np.random.default_rng(0)
F = onnx.TensorProto.FLOAT


def model(nodes, inputs, outputs, weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A checked opset-17 model from nodes, (name, shape) inputs/outputs and named constant arrays."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, F, s) for n, s in outputs],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def producer_rows(width: int, fan_in: int, combination: bool) -> np.ndarray:
    """[width, fan_in] random rows; with ``combination`` the last row is row 0 + 2 * row 1."""
    w = RNG.standard_normal((width, fan_in))
    if combination:
        w[-1] = w[0] + 2 * w[1]
    return w


def conv_model(combination=True, consumer_bias=True):
    w1 = producer_rows(6, 4, combination).reshape(6, 4, 1, 1)
    b1 = RNG.standard_normal(6)
    if combination:
        b1[-1] = b1[0] + 2 * b1[1]
    weights = {"w1": w1, "b1": b1, "w2": RNG.standard_normal((3, 6, 3, 3))}
    inputs2 = ["h", "w2"]
    if consumer_bias:
        weights["b2"] = RNG.standard_normal(3)
        inputs2.append("b2")
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="producer"),
             helper.make_node("Conv", inputs2, ["y"], name="consumer", pads=[1, 1, 1, 1])]
    return model(nodes, [("x", ["N", 4, 6, 6])], [("y", ["N", 3, 6, 6])], weights), (2, 4, 6, 6)


def gemm_model():
    weights = {"w1": producer_rows(6, 4, True).T, "w2": RNG.standard_normal((3, 6)), "c2": RNG.standard_normal(3)}
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], name="producer"),
             helper.make_node("Gemm", ["h", "w2", "c2"], ["y"], name="consumer", transB=1, alpha=0.5, beta=2.0)]
    return model(nodes, [("x", ["N", 4])], [("y", ["N", 3])], weights), (16, 4)


def matmul_model():
    weights = {"w1": producer_rows(6, 4, True).T, "w2": RNG.standard_normal((6, 3))}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="producer"),
             helper.make_node("MatMul", ["h", "w2"], ["y"], name="consumer")]
    return model(nodes, [("x", ["N", 5, 4])], [("y", ["N", 5, 3])], weights), (4, 5, 4)


def lstm_model():
    hidden = 3
    weights = {"w1": producer_rows(6, 4, True).T, "W": RNG.standard_normal((1, 4 * hidden, 6)) * 0.5,
               "R": RNG.standard_normal((1, 4 * hidden, hidden)) * 0.5}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="producer"),
             helper.make_node("LSTM", ["h", "W", "R"], ["y"], name="consumer", hidden_size=hidden)]
    return model(nodes, [("x", [5, "N", 4])], [("y", [5, 1, "N", hidden])], weights), (5, 4, 4)


def prune_last_unit(proto: onnx.ModelProto, root: str, axis: int):
    dg = op.analyse_model(proto)
    group = next(g for g in dg.prunable_groups() if ChannelAxis(root, axis) in g.members)
    result = op.apply_plan(dg, {group.id: [group.size - 1]})
    return dg, result


@pytest.mark.parametrize("build, root, axis", [(conv_model, "w1", 0), (gemm_model, "w1", 1), (matmul_model, "w1", 1),
                                               (lstm_model, "w1", 1)], ids=["conv", "gemm", "matmul", "lstm"])
def test_a_linear_combination_of_kept_channels_is_reconstructed_exactly(build, root, axis):
    proto, shape = build()
    dg, result = prune_last_unit(proto, root, axis)
    x = RNG.standard_normal((8 * shape[0], *shape[1:])).astype(np.float32)
    if build is lstm_model:  # sequence-first: samples on axis 1
        x = RNG.standard_normal((shape[0], 8 * shape[1], shape[2])).astype(np.float32)
    rec = reconstruct(dg, result, {"x": x}, ReconstructOptions(alpha=0.0, holdout=0.25))
    [fit] = rec.layers
    assert fit.node == "consumer" and fit.error_before > 1e-3 and fit.error_after < 1e-9
    check_model(rec.result.exported, original=lambda: export_graph(dg.graph, dg.loaded))
    feeds = {"x": x[:, :4] if build is lstm_model else x[:4]}
    assert not compare(proto, result.exported, feeds, rtol=1e-3).passed  # pruning alone changes the output
    assert compare(proto, rec.result.exported, feeds, rtol=1e-4).passed


def constant_channel_model(consumer_bias: bool):
    """x -> Conv 1x1 -> Relu -> Conv 3x3 (no padding); channel 2 is 0.7 everywhere, channel 4 is dead (0)."""
    proto, _ = conv_model(combination=False, consumer_bias=consumer_bias)
    weights = {t.name: numpy_helper.to_array(t).copy() for t in proto.graph.initializer}
    weights["w1"][2], weights["b1"][2] = 0.0, 0.7
    weights["w1"][4], weights["b1"][4] = 0.0, -5.0
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["p"], name="producer"),
             helper.make_node("Relu", ["p"], ["h"], name="relu"),
             helper.make_node("Conv", ["h", "w2"] + (["b2"] if consumer_bias else []), ["y"], name="consumer")]
    return model(nodes, [("x", ["N", 4, 6, 6])], [("y", ["N", 3, 4, 4])], weights)


@pytest.mark.parametrize("method", ["bias", "ridge"])
@pytest.mark.parametrize("consumer_bias", [True, False])
def test_constant_channels_are_compensated_in_the_bias(method, consumer_bias):
    proto = constant_channel_model(consumer_bias)
    dg = op.analyse_model(proto)
    group = next(g for g in dg.prunable_groups() if ChannelAxis("w1", 0) in g.members)
    result = op.apply_plan(dg, {group.id: [2, 4]})
    x = RNG.standard_normal((20, 4, 6, 6)).astype(np.float32)
    rec = reconstruct(dg, result, {"x": x}, ReconstructOptions(method=method, alpha=0.0))
    [fit] = rec.layers
    assert fit.error_before > 1e-3 and fit.error_after < 1e-10
    consumer = next(n for n in rec.result.graph.nodes if n.name == "consumer")
    assert len(consumer.inputs) == 3  # a bias was added where there was none
    check_model(rec.result.exported, original=lambda: export_graph(dg.graph, dg.loaded))
    assert compare(proto, rec.result.exported, {"x": x[:3]}, rtol=1e-5).passed


def test_consumers_that_cannot_be_refit_get_a_note():
    weights = {"w1": RNG.standard_normal((4, 6)), "w2": RNG.standard_normal((6, 3)), "gamma": RNG.random(6) + 0.5,
               "beta": RNG.standard_normal(6)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="producer"),
             helper.make_node("LayerNormalization", ["h", "gamma", "beta"], ["n"], name="norm", axis=-1),
             helper.make_node("MatMul", ["n", "w2"], ["y"], name="consumer")]
    proto = model(nodes, [("x", ["N", 4])], [("y", ["N", 3])], weights)
    dg, result = prune_last_unit(proto, "w1", 1)
    rec = reconstruct(dg, result, {"x": RNG.standard_normal((10, 4)).astype(np.float32)})
    assert any("'norm'" in note and "normalises over the pruned axis" in note for note in rec.notes)
    assert [f.node for f in rec.layers] == ["consumer"]  # its input n lost the channel too: refit all the same


def test_grams_are_bounded_by_features_not_samples():
    proto, _ = conv_model()
    dg, result = prune_last_unit(proto, "w1", 0)
    small = reconstruct(dg, result, {"x": RNG.standard_normal((10, 4, 6, 6)).astype(np.float32)},
                        ReconstructOptions(chunk_elements=500))
    assert small.layers[0].rows == 8 * 36  # 2 of 10 samples held out; one row per output position
    session = make_session(small.result.exported, "cpu")
    assert session.run(None, {"x": np.zeros((1, 4, 6, 6), np.float32)})[0].shape == (1, 3, 6, 6)
