"""Every zoo model, exported with both exporters with BatchNormalization kept or folded, must pass the full
ONNX checker, be one self-contained file with a dynamic batch axis, match torch in onnxruntime at batch 2 and 3,
and keep (or fold) exactly the BatchNormalization nodes it should."""

from __future__ import annotations

import functools
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from onnxprune import models

VARIANTS = [("torchscript", True), ("torchscript", False), ("dynamo", True), ("dynamo", False)]
CASES = [pytest.param(name, exp, kb, id=f"{name}-{exp}-{'bn' if kb else 'nobn'}")
         for name in models.names("cnn", "rnn") for exp, kb in VARIANTS]  # transformers: test_transformers
ATOL = 1e-4


@functools.cache
def _model(name: str) -> nn.Module:
    return models.ZOO[name].build()


@functools.cache
def _reference(name: str, batch: int):
    spec = models.ZOO[name]
    inputs = spec.example_inputs(batch)
    with torch.no_grad():
        out = _model(name)(*inputs)
    return {n: t.numpy() for n, t in zip(spec.input_names, inputs)}, out.numpy()


def _num_bn_modules(name: str) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in _model(name).modules())


@pytest.mark.parametrize("name,exporter,keep_bn", CASES)
def test_checker_and_self_contained(exported_model, name, exporter, keep_bn):
    path = exported_model(name, exporter, keep_bn)
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path, load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert all(f.endswith(".onnx") for f in os.listdir(os.path.dirname(path)))  # no external-data side files
    spec = models.ZOO[name]
    assert [i.name for i in model.graph.input] == list(spec.input_names)
    assert [o.name for o in model.graph.output] == list(spec.output_names)
    for inp in model.graph.input:  # the batch axis is symbolic, every other axis static
        dims = inp.type.tensor_type.shape.dim
        dynamic = spec.dynamic_axes.get(inp.name, {})
        for axis, dim in enumerate(dims):
            assert bool(dim.dim_param) == (axis in dynamic), (inp.name, axis, dim)


@pytest.mark.parametrize("name,exporter,keep_bn", CASES)
def test_onnxruntime_matches_torch(exported_model, name, exporter, keep_bn):
    sess = ort.InferenceSession(exported_model(name, exporter, keep_bn), providers=["CPUExecutionProvider"])
    for batch in (2, 3):  # 2 is the export batch; 3 checks that the batch axis really is dynamic
        feeds, expected = _reference(name, batch)
        (got,) = sess.run(None, feeds)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL, err_msg=f"batch {batch}")


@pytest.mark.parametrize("name,exporter,keep_bn", CASES)
def test_batchnorm_kept_or_folded(exported_model, name, exporter, keep_bn):
    graph = onnx.load(exported_model(name, exporter, keep_bn)).graph
    producer = {out: node for node in graph.node for out in node.output}
    bns = [n for n in graph.node if n.op_type == "BatchNormalization"]
    if keep_bn:
        assert len(bns) == _num_bn_modules(name)
    else:
        assert len(bns) == models.ZOO[name].bn_unfoldable
        after_conv = [n.name for n in bns if n.input[0] in producer and producer[n.input[0]].op_type == "Conv"]
        assert not after_conv, f"BatchNormalization right after Conv not folded: {after_conv}"


def test_export_single_path_and_deep_spec(tmp_path):
    path = models.export("vgg_bn", tmp_path / "vgg.onnx", exporter="torchscript", keep_bn=False)
    assert os.path.basename(path) == "vgg.onnx" and os.listdir(tmp_path) == ["vgg.onnx"]
    deep = models.deep_spec(3)
    path = models.export(deep, tmp_path / "deep3.onnx", keep_bn=True)
    graph = onnx.load(path).graph
    assert sum(n.op_type == "BatchNormalization" for n in graph.node) == 1 + 2 * 3
    with pytest.raises(KeyError):
        models.export("no_such_model", tmp_path / "x.onnx")
    with pytest.raises(ValueError):
        models.export("vgg_bn", tmp_path / "x.onnx", exporter="tf2onnx")


def test_build_is_deterministic():
    for name, spec in ((n, models.ZOO[n]) for n in models.names("cnn", "rnn")):
        a, b = spec.build().state_dict(), spec.build().state_dict()
        assert not spec.build().training
        assert spec.kind in ("cnn", "rnn")
        assert all(torch.equal(a[k], b[k]) for k in a), name
        for input_name, t in zip(spec.input_names, spec.example_inputs()):
            (batch_axis,) = spec.dynamic_axes[input_name]
            assert t.shape[batch_axis] == 2, name
