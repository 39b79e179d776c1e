"""Group counts on the ResNet-50-like and MobileNetV2-like models, checked against counts made by hand from the
architectures in models/ (both exporters, BatchNormalization kept and folded)."""

from __future__ import annotations

import pytest

import onnxprune as op

VARIANTS = [(e, kb) for e in ("torchscript", "dynamo") for kb in (True, False)]


def _weights_by_group(dg) -> list[set[str]]:
    return [{ax.tensor for ax in g.members if ax.axis == 0 and ax.tensor.endswith(".weight")}
            for g in dg.prunable_groups()]


@pytest.mark.parametrize("exporter,keep_bn", VARIANTS)
def test_resnet_bottleneck_group_count(exported_model, exporter, keep_bn):
    """Stem (1) + one residual stream per stage, stages [2, 1, 1, 1] (4) + two inner convs per bottleneck
    (conv1, conv2) x 5 blocks (10) = 15 prunable; the input's 3 channels and the 10 logits are protected."""
    dg = op.analyse_model(exported_model("resnet_bottleneck", exporter, keep_bn))
    assert len(dg.prunable_groups()) == 15
    assert len(dg.channel_groups()) == 17
    if exporter == "torchscript" and keep_bn:  # torch parameter names survive: check the stage-1 stream by name
        stream = next(g for g in _weights_by_group(dg) if "layers.0.conv3.weight" in g)
        assert stream >= {"layers.0.conv3.weight", "layers.0.downsample.0.weight", "layers.1.conv3.weight",
                          "layers.0.bn3.weight", "layers.1.bn3.weight", "layers.0.downsample.1.weight"}
        assert "layers.2.conv3.weight" not in stream  # the next stage has its own stream (stride-2 downsample)


@pytest.mark.parametrize("exporter,keep_bn", VARIANTS)
def test_mobilenet_v2_group_count(exported_model, exporter, keep_bn):
    """Stem + block-1 depthwise (1), block-1 projection (1), per expanding block its expansion + depthwise
    (blocks 2, 3, 4: 3), the 16-wide residual stream (blocks 2-3: 1), the 24-wide stream including block 5's
    depthwise and projection (1), the last 1x1 conv (1) = 8 prunable; input and logits protected."""
    dg = op.analyse_model(exported_model("mobilenet_v2", exporter, keep_bn))
    assert len(dg.prunable_groups()) == 8
    assert len(dg.channel_groups()) == 10
    sizes = sorted(g.size for g in dg.prunable_groups())
    assert sizes == sorted([16, 8, 32, 16, 32, 32, 24, 32])
