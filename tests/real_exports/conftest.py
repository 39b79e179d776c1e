"""Session cache of the real-export models written for this folder (``models.real_exports``), exported once per
exporter: ``real_export(name, exporter) -> path``."""

from __future__ import annotations

import onnx
import pytest
import torch

from onnxprune import models

METADATA = {"labels": "zero,one,two,three,four,five,six,seven,eight,nine", "task": "classification"}


def _build(ctor):
    def build():
        torch.manual_seed(0)
        model = ctor()
        with torch.no_grad():  # non-trivial BN statistics, so the exported BN is not an identity
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
        return model.eval()
    return build


def _images(*shape: int):
    def make(batch: int = 2):
        return (torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch)),)
    return make


def _lstm_inputs(batch: int = 2):
    g = torch.Generator().manual_seed(batch)
    return (torch.randint(0, 50, (batch, 7), generator=g), torch.randn(2, batch, 24, generator=g),
            torch.randn(2, batch, 24, generator=g))


SPECS = {
    "nhwc_keras_style": models.ModelSpec(
        "nhwc_keras_style", _build(models.real_exports.NHWCConvNet), _images(8, 8, 1), ("x",),
        {"x": {0: "batch"}, "output": {0: "batch"}}, "real"),
    "shape_chains": models.ModelSpec(
        "shape_chains", _build(models.real_exports.ShapeChainNet), _images(3, 16, 16), ("x",),
        {"x": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch"}}, "real"),
    "stateful_lstm": models.ModelSpec(
        "stateful_lstm", _build(models.real_exports.StatefulLSTM), _lstm_inputs, ("tokens", "h0", "c0"),
        {"tokens": {0: "batch", 1: "seq"}, "h0": {1: "batch"}, "c0": {1: "batch"}, "output": {0: "batch"},
         "hn": {1: "batch"}, "cn": {1: "batch"}}, "real", output_names=("output", "hn", "cn")),
}


def stamp_metadata(path: str) -> str:
    """Give the exported file the fields a user's pipeline reads (labels, version, doc string), in place."""
    model = onnx.load(path)
    onnx.helper.set_model_props(model, METADATA)
    model.model_version, model.doc_string = 3, f"{path.rsplit('/', 1)[-1]}: issue 8 real-export case"
    model.functions.append(onnx.helper.make_function(  # a model-local function (unused here), as exporters write
        "com.example", "ScaledRelu", ["x", "s"], ["y"],
        [onnx.helper.make_node("Relu", ["x"], ["r"]), onnx.helper.make_node("Mul", ["r", "s"], ["y"])],
        [onnx.helper.make_opsetid("", model.opset_import[0].version)]))
    model.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    onnx.save(model, path)
    return path


@pytest.fixture(scope="session")
def real_export(tmp_path_factory):
    """``get(name, exporter) -> path``: a ``SPECS`` model exported (BN kept) and stamped with metadata, once."""
    out_dir = tmp_path_factory.mktemp("real_exports")
    cache: dict[tuple[str, str], str] = {}

    def get(name: str, exporter: str = "torchscript") -> str:
        if (name, exporter) not in cache:
            path = str(out_dir / f"{name}.{exporter}.onnx")
            cache[(name, exporter)] = stamp_metadata(models.export(SPECS[name], path, exporter, keep_bn=True))
        return cache[(name, exporter)]

    return get
