"""Shapes that depend on the input data (issue 9): the refusal names the data-dependent op, not --input-shape."""

from __future__ import annotations

import onnx
import onnx.parser
import pytest

from onnxprune.errors import ShapeError
from onnxprune.ir.loading import load
from onnxprune.ir.shapes import _check_shapes, data_dependence

IF_NONZERO = """<ir_version: 8, opset_import: ["": 17]>
agraph (float[N, 8] x, bool flag) => (float[N, 8] y) {
  h = Relu(x)
  sel = If(flag) <then_branch = g1 () => (int64[2, K] a) { a = NonZero(h) },
                  else_branch = g2 () => (int64[J] b) { z = NonZero(x)
                                                        sh = Constant <value = int64[1] {-1}> ()
                                                        b = Reshape(z, sh) }>
  c = Cast <to = 1> (sel)
  s = ReduceSum <keepdims = 1> (c)
  y = Add(h, s)
}"""


def test_nonzero_inside_if_is_named():
    model = onnx.parser.parse_model(IF_NONZERO)
    onnx.checker.check_model(model, full_check=True)
    graph = load(model).graph
    cause = data_dependence(graph.tensors()["c"])
    assert cause is not None and cause.startswith("NonZero in node '")
    assert data_dependence(graph.tensors()["h"]) is None


def test_refusal_says_data_dependent_not_input_shape():
    graph = load(onnx.parser.parse_model(IF_NONZERO)).graph
    graph.tensors()["sel"].shape = None  # as when no inference could type the If (branches of different ranks)
    with pytest.raises(ShapeError) as info:
        _check_shapes(graph)
    message = str(info.value)
    assert "shape of 'sel' depends on the input data (NonZero in node '" in message
    assert "--input-shape" not in message


def test_topk_with_k_from_data():
    text = """<ir_version: 8, opset_import: ["": 17]>
    agraph (float[N, 8] x) => (float[N, K] v) {
      m = ReduceMax <keepdims = 0> (x)
      k64 = Cast <to = 7> (m)
      one = Constant <value = int64[1] {1}> ()
      k = Reshape(k64, one)
      v, i = TopK(x, k)
    }"""
    graph = load(onnx.parser.parse_model(text)).graph
    assert "TopK in node '" in data_dependence(graph.tensors()["v"])


def test_untyped_without_data_dependence_keeps_the_hint():
    graph = load(onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 17]>
    agraph (float[N, 8] x) => (float[N, 8] y) { h = Relu(x)
      y = Relu(h) }""")).graph
    graph.tensors()["h"].shape = None
    with pytest.raises(ShapeError, match="--input-shape"):
        _check_shapes(graph)
