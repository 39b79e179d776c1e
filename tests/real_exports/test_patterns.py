"""Issue 8's real-export patterns that nobody else's builder covers, with both torch exporters (dynamo marked slow):
each is pruned, written, and checked by ``tests.support.real_export_check.prune_and_check`` (checker, onnxruntime
at two dynamic sizes, the mask oracle at both, metadata and model fields compared field by field).

- ``nhwc_keras_style``: channels-last input, Transpose pairs around every Conv, BN and PRelu, a residual Add in
  NHWC and the Flatten in NHWC order (TensorFlow converters' layout).
- ``shape_chains``: dynamic batch, height and width, every reshape target computed from ``Shape`` (PaddlePaddle's
  habit); once more with every weight held in a ``Constant`` node, as Paddle writes weights.
- ``stateful_lstm``: the LSTM state is a graph input and output with the dynamic batch: its hidden units stay
  (protected interface, with the reason), the embedding and the head prune.
- a plan that prunes nothing says so in the report, and the written model is no larger than the input.
"""

from __future__ import annotations

import os
import stat

import onnx
import pytest

import onnxprune as op
from onnxprune import models
from onnxprune.pipeline import format_report
from tests.support.real_export_check import prune_and_check

EXPORTERS = ["torchscript", pytest.param("dynamo", marks=pytest.mark.slow)]
SIZES = {
    "nhwc_keras_style": [{"batch": 1}, {"batch": 3}],
    "shape_chains": [{"batch": 1, "height": 16, "width": 16}, {"batch": 3, "height": 24, "width": 20}],
    "stateful_lstm": [{"batch": 1, "seq": 5}, {"batch": 3, "seq": 9}],
}


@pytest.mark.parametrize("ratio", [0.3, 0.5])
@pytest.mark.parametrize("name", sorted(SIZES))
@pytest.mark.parametrize("exporter", EXPORTERS)
def test_pattern_prunes_and_keeps_the_model_fields(real_export, tmp_path, name, exporter, ratio):
    path = real_export(name, exporter)
    pruned = prune_and_check(path, tmp_path, SIZES[name], ratio=ratio)
    assert pruned.macs["after"] < pruned.macs["before"]


def test_nhwc_pattern_prunes_every_inner_conv(real_export):
    dg = op.analyse_model(real_export("nhwc_keras_style"))
    sizes = sorted(g.size for g in dg.prunable_groups())
    assert sizes == [16, 32, 32], [(g.size, g.blocked_reasons) for g in dg.channel_groups()]


def test_shape_chains_with_weights_in_constant_nodes(real_export, tmp_path):
    source = tmp_path / "paddle_style.onnx"
    model = models.real_exports.weights_as_constants(onnx.load(real_export("shape_chains")))
    assert not model.graph.initializer
    onnx.save(model, source)
    prune_and_check(source, tmp_path, SIZES["shape_chains"], ratio=0.5)


def test_lstm_state_interface_stays_with_the_reason(real_export):
    dg = op.analyse_model(real_export("stateful_lstm"))
    hidden = [g for g in dg.channel_groups() if g.size == 24]
    assert len(hidden) == 1 and not hidden[0].prunable
    assert any("graph input 'h0' axis 2 is protected" in r for r in hidden[0].blocked_reasons)
    assert sorted(g.size for g in dg.prunable_groups()) == [16, 32]


def test_nothing_pruned_says_so_and_writes_no_larger_model(real_export, tmp_path):
    source = real_export("stateful_lstm")
    pruned = prune_and_check(source, tmp_path, SIZES["stateful_lstm"], expect_pruned=False, ratio=0.0)
    assert pruned.report["groups"]["pruned"] == 0 and pruned.report["channels_removed"] == 0
    assert pruned.validation["skipped"]
    assert "groups  0 pruned" in format_report(pruned.report)
    assert any(w.startswith("nothing was pruned: the ratio removes no whole unit") for w in pruned.report["warnings"])
    written = tmp_path / "stateful_lstm.torchscript.pruned.onnx"
    assert os.path.getsize(written) <= os.path.getsize(source)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask
