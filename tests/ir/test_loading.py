"""Loading (files, external data, shapes) and atomic saving."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune as op
from onnxprune.ir.saving import save_model
from onnxprune.validation.oracle import compare


def _conv_model(shape=("N", 3, 8, 8)) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "w")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 16, 1, 1)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, w2])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_external_data_model_loads_and_prunes(tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save_model(_conv_model(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.data", size_threshold=0)
    assert os.path.exists(tmp_path / "ext.data")
    dg = op.analyse_model(path)
    group = dg.group_of("w", 0)[0]
    result = op.prune_group(group, [1, 5])
    assert compare(op.masked_model(dg, {group.id: [1, 5]}), result.model).passed
    assert {i.name: list(i.dims) for i in result.model.graph.initializer}["w"] == [14, 3, 3, 3]


def test_missing_external_data_is_a_clear_error(tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save_model(_conv_model(), str(path), save_as_external_data=True, location="ext.data", size_threshold=0)
    os.remove(tmp_path / "ext.data")
    with pytest.raises(op.ModelLoadError, match="external data"):
        op.analyse_model(path)


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"\x08\x07garbage\xff\xff", "not a valid ONNX"),
                                           (None, "no such file")])
def test_bad_files_are_clear_errors(tmp_path, content, match):
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(op.ModelLoadError, match=match):
        op.analyse_model(path)


def test_truncated_file_is_a_clear_error(tmp_path):
    data = _conv_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(op.ModelLoadError):
        op.analyse_model(path)


def test_unknown_input_shape_names_the_tensor_and_the_option():
    model = _conv_model()
    model.graph.input[0].type.tensor_type.ClearField("shape")
    with pytest.raises(op.ShapeError, match=r"'x'.*--input-shape"):
        op.analyse_model(model)


def test_input_shape_option_fixes_dynamic_dims():
    dg = op.analyse_model(_conv_model(shape=("N", 3, "H", "W")), input_shapes={"x": [2, 3, 8, 8]})
    assert dg.tensors["h"].shape == [2, 16, 8, 8]
    with pytest.raises(op.ModelLoadError, match="graph inputs are"):
        op.analyse_model(_conv_model(), input_shapes={"nope": [1]})


def test_symbolic_batch_stays_symbolic_after_pruning():
    dg = op.analyse_model(_conv_model())
    result = op.prune_group(dg.group_of("w", 0)[0], [0])
    dims = result.model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N"


def test_save_is_atomic_and_never_overwrites_the_input(tmp_path):
    src = tmp_path / "in.onnx"
    onnx.save_model(_conv_model(), str(src))
    before = src.read_bytes()
    with pytest.raises(op.OnnxPruneError, match="is the input"):
        save_model(_conv_model(), src, source=src)
    with pytest.raises(op.OnnxPruneError, match="does not exist"):
        save_model(_conv_model(), tmp_path / "missing" / "out.onnx", source=src)
    assert src.read_bytes() == before
    save_model(_conv_model(), tmp_path / "out.onnx", source=src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx", "out.onnx"]  # no temporary file left
