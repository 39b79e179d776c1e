"""Issue 8, architectures as published and exported as they come: ShuffleNetV2 1.0x (torchvision's layout) and an
encoder of ``nn.TransformerEncoderLayer`` (packed in-projection), with both exporters.

ShuffleNetV2: every unit's shuffle target ``view(batch, -1, h, w)`` is computed from the previous unit's shape, so
the loader folds one unit per round; with six rounds the last units kept a dynamic channel dim ('couples it with a
dynamic dimension', 'merges this axis with dynamic dims') and a plan cut their convs inconsistently. Pruned at 0.5
here: checker, onnxruntime at two batch sizes, mask oracle (prune's validation, tolerance criterion).

Encoder: the exporters fold the heads into the dynamic batch axis ([T, B*heads, head_dim]) and pick q/k/v by a
Gather on the packed projection; the analysis follows the heads through the batch axis as a packed factor
(``AnalysisRecord.pack``), so heads (and, without ``heads_ratio``, head_dim positions) prune exactly.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxprune as op
from onnxprune.pipeline import PruneOptions, prune_file
from onnxprune.runtime import make_session

EXPORTERS = ["torchscript", pytest.param("dynamo", marks=pytest.mark.slow)]


def _feeds(session, batch: int, seed: int = 0) -> dict:
    spec = session.get_inputs()[0]
    shape = [batch if not isinstance(d, int) else d for d in spec.shape]
    rng = np.random.default_rng(seed + batch)
    if "int" in spec.type:
        return {spec.name: rng.integers(0, 100, shape).astype(np.int64)}
    return {spec.name: rng.standard_normal(shape).astype(np.float32)}


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_shufflenet_v2_published_widths_prunes_exactly(exported_model, tmp_path, exporter):
    path = exported_model("shufflenet_v2_x1_0", exporter, False)
    dg = op.analyse_model(path)
    channel = [g for g in dg.groups if g.kind == "channel"]
    reasons = [r for g in channel for r in g.blocked_reasons]
    assert not [r for r in reasons if "dynamic" in r], reasons
    assert len(dg.prunable_groups()) >= len(channel) - 3
    out = tmp_path / "pruned.onnx"
    report = prune_file(path, out, PruneOptions(ratio=0.5))
    assert report["validation"]["passed"] and report["validation"]["criterion"] == "tolerance"
    assert report["macs"]["after"] < 0.6 * report["macs"]["before"]
    onnx.checker.check_model(str(out), full_check=True)
    session = make_session(str(out))
    for batch in (1, 3):
        assert session.run(None, _feeds(session, batch))[0].shape == (batch, 1000)


def _head_widths(report: dict) -> list[tuple[int, int]]:
    return [(r["width"]["before"], r["width"]["after"]) for r in report["groups_table"] if r["kind"] == "heads"]


@pytest.mark.parametrize("name", ["torch_encoder_bf", "torch_encoder"])
@pytest.mark.parametrize("exporter", EXPORTERS)
def test_transformer_encoder_layer_prunes_heads_exactly(exported_model, tmp_path, name, exporter):
    """Heads ride in the batch axis ([T, B*heads, hd]) between two Reshapes, and q/k/v are picked by Gather from
    the packed in-projection: with heads_ratio the heads are pruned (2 of 4 in every layer), the pruned model is
    the mask oracle's model to float precision at batch 1 and 3, and more heads pruned means fewer MACs."""
    path = exported_model(name, exporter, False)
    macs = {}
    for heads in (None, 0.5, 0.75):
        out = tmp_path / f"{heads}.onnx"
        report = prune_file(path, out, PruneOptions(ratio=0.5, heads_ratio=heads, no_hidden=True))
        validation = report["validation"]
        assert validation["passed"] and validation["oracle"] and validation["max_abs_diff"] < 1e-5
        assert not report["warnings"]
        macs[heads], before = report["macs"]["after"], report["macs"]["before"]
        if heads is not None:
            widths = _head_widths(report)
            assert widths and all(w == (4, 4 - round(4 * heads)) for w in widths), widths
        onnx.checker.check_model(str(out), full_check=True)
        session = make_session(str(out))
        for batch in (1, 3):
            assert session.run(None, _feeds(session, batch))[0].shape == (batch, 10)
    assert macs[None] < before and macs[0.5] <= macs[None] and macs[0.75] < macs[None]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_transformer_encoder_layer_head_groups_are_prunable(exported_model, exporter):
    for name in ("torch_encoder_bf", "torch_encoder"):
        dg = op.analyse_model(exported_model(name, exporter, False),
                              options=op.AnalysisOptions(factor_policy="leading"))
        heads = [g for g in dg.groups if g.unit_name() == "heads"]
        assert heads and all(g.prunable and g.size == 4 and g.exact for g in heads)
