"""Issue 8's real-export patterns whose builders live elsewhere, held to the same check as this folder's own
(``tests.support.real_export_check.prune_and_check``: checker, onnxruntime and the mask oracle at two dynamic sizes,
model fields field by field): the dynamic-H/W detector with a Resize + Concat neck and the ``If`` sample-rate switch
(``models.dynamic_shapes``, written with onnx.helper), a TorchScript/dynamo GPT decoder with dynamic batch *and*
sequence, the packed-QKV ``nn.TransformerEncoderLayer`` encoder, and ShuffleNetV2 at published widths (zoo).
Groups through LayerNorm are left out (``no_hidden``) so every plan stays mask-exact."""

from __future__ import annotations

import onnx
import pytest

from tests.support.real_export_check import prune_and_check

EXPORTERS = ["torchscript", pytest.param("dynamo", marks=pytest.mark.slow)]
BUILT = {
    "detector": [{"batch": 1, "height": 32, "width": 32}, {"batch": 2, "height": 48, "width": 64}],
    "rate_switch": [{"batch": 1, "length": 400}, {"batch": 3, "length": 320}],
}
ZOO = {
    "gpt_decoder": [{"batch": 1, "seq": 5}, {"batch": 3, "seq": 12}],
    "torch_encoder_bf": [{"batch": 1}, {"batch": 3}],
    "shufflenet_v2_x1_0": [{"batch": 1}, {"batch": 3}],
}


@pytest.mark.parametrize("name", sorted(BUILT))
def test_built_pattern_prunes_and_keeps_the_model_fields(tmp_path, name):
    dynamic_shapes = pytest.importorskip("onnxprune.models.dynamic_shapes")
    model = getattr(dynamic_shapes, name)()
    onnx.helper.set_model_props(model, {"source": "issue 8", "pattern": name})
    model.model_version, model.doc_string = 4, name
    source = tmp_path / f"{name}.onnx"
    onnx.save(model, source)
    pruned = prune_and_check(source, tmp_path, BUILT[name], ratio=0.5)
    assert pruned.macs["after"] < pruned.macs["before"]


@pytest.mark.parametrize("name", [n if n != "shufflenet_v2_x1_0" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(ZOO)])
@pytest.mark.parametrize("exporter", EXPORTERS)
def test_zoo_pattern_prunes_and_keeps_the_model_fields(exported_model, tmp_path, name, exporter):
    pruned = prune_and_check(exported_model(name, exporter, False), tmp_path, ZOO[name], ratio=0.5, no_hidden=True)
    assert pruned.macs["after"] < pruned.macs["before"]
