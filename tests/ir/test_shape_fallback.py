"""Shape inference that survives real exports: what ONNX's inference leaves untyped is typed by onnxruntime's
symbolic shape inference, then (with concrete input shapes) by one observed run; only then is the model refused,
naming the first node that could not be typed."""

from __future__ import annotations

import os

import onnx
import pytest
from onnx import shape_inference
from onnxprune.models import dynamic_shapes

import onnxprune as op
from onnxprune.ir import shape_fallback
from onnxprune.ir.shape_fallback import OBSERVED, SYMBOLIC, observed_shapes, symbolic_shapes, untyped_tensors


def _onnx_only(model: onnx.ModelProto) -> onnx.ModelProto:
    return shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)


def test_onnx_leaves_the_text_recognizers_squeeze_and_transpose_untyped():
    assert [name for name, _ in untyped_tensors(_onnx_only(dynamic_shapes.text_recognizer()))] == [
        "sequence", "steps", "scores"]  # logits: the graph output declares its shape


def test_symbolic_inference_types_them_and_analysis_prunes_through_them():
    model = dynamic_shapes.text_recognizer()
    found = symbolic_shapes(_onnx_only(model), {"sequence", "steps"})
    dims = [d.dim_param or d.dim_value for d in found["steps"].type.tensor_type.shape.dim]
    assert dims == ["batch", "width", 16] and found["steps"].doc_string == SYMBOLIC
    dg = op.analyse_model(model)
    assert dg.tensors["steps"].shape == ["batch", "width", 16]
    assert len(dg.prunable_groups()) == 2  # conv1 and conv2 (through the Squeeze and Transpose)


def test_symbolic_inference_writes_no_file_into_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = dynamic_shapes.fused_conv()  # symbolic inference cannot finish on FusedConv
    assert "fused_out" not in symbolic_shapes(_onnx_only(model), {"fused_out"})
    assert os.listdir(tmp_path) == []


def test_untyped_with_symbolic_inputs_is_refused_naming_the_first_node_and_what_to_do():
    with pytest.raises(op.ShapeError, match=r"'fused_out' \(FusedConv node 'fused'\).*--input-shape"):
        op.analyse_model(dynamic_shapes.fused_conv())


def test_with_concrete_input_shapes_the_shapes_are_observed_on_a_copy():
    model = dynamic_shapes.fused_conv()
    before = model.SerializeToString()
    dg = op.analyse_model(model, input_shapes={"image": [2, 3, 16, 16]})
    assert dg.tensors["fused_out"].shape == [2, 8, 16, 16]
    assert len(dg.prunable_groups()) == 1  # conv2; FusedConv is opaque
    assert model.SerializeToString() == before  # the user's model is never changed
    seen, why = observed_shapes(dynamic_shapes.fused_conv(shape=(2, 3, 16, 16)), ["fused_out"])
    assert why == "" and seen["fused_out"].doc_string == OBSERVED


def test_observed_needs_concrete_inputs():
    seen, why = observed_shapes(dynamic_shapes.fused_conv(), ["fused_out"])
    assert seen == {} and "symbolic" in why


def test_nothing_runs_when_static_inference_types_everything(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the fallback ran although ONNX's inference typed every tensor")

    monkeypatch.setattr(shape_fallback, "symbolic_shapes", refuse)
    monkeypatch.setattr(shape_fallback, "observed_shapes", refuse)
    for build in (dynamic_shapes.detector, dynamic_shapes.sentence_encoder, dynamic_shapes.nhwc_face_detector):
        assert op.analyse_model(build()).prunable_groups()
