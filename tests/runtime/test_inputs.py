"""Made-up inputs the model can run on: integer inputs below the tables they index, masks in {0, 1}, symbolic
spatial dims at a size the model accepts, and a clear error naming the dims when none works."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.runtime import make_session
from onnxprune.runtime.inputs import InputError, example_inputs, integer_bounds, random_inputs


def _model(nodes, inputs, output, inits):
    graph = helper.make_graph(nodes, "m", inputs, [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _encoder():
    """input_ids index a 30-row table; token_type_ids (through a Cast) a 2-row one; attention_mask scales."""
    inits = [numpy_helper.from_array(np.ones((30, 4), np.float32), "emb"),
             numpy_helper.from_array(np.ones((2, 4), np.float32), "types")]
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["a"]),
             helper.make_node("Cast", ["token_type_ids"], ["t"], to=TensorProto.INT64),
             helper.make_node("Gather", ["types", "t"], ["b"]),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axis"], ["m3"]),
             helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Mul", ["s", "m3"], ["y"])]
    inits.append(numpy_helper.from_array(np.array([2], np.int64), "axis"))
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
              for n in ("input_ids", "token_type_ids", "attention_mask")]
    return _model(nodes, inputs, "y", inits)


def test_integer_inputs_stay_below_the_tables_they_index():
    model = _encoder()
    assert integer_bounds(model) == {"input_ids": 30, "token_type_ids": 2}
    feeds = example_inputs(model, make_session(model, "cpu"), batch=3)
    assert feeds["input_ids"].shape == (3, 16) and feeds["input_ids"].max() < 30
    assert set(np.unique(feeds["token_type_ids"])) <= {0, 1}
    assert set(np.unique(feeds["attention_mask"])) <= {0, 1}
    # the old behaviour (ids up to 16 everywhere) indexes past the 2-row table
    with pytest.raises(Exception, match="out of bounds|indices"):
        make_session(model, "cpu").run(None, random_inputs(make_session(model, "cpu"), bounds={"input_ids": 30}))


def _pooling_detector(kernel: int):
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"]),
             helper.make_node("AveragePool", ["h"], ["y"], kernel_shape=[kernel, kernel])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])], "y", [w])


def test_symbolic_spatial_dims_take_a_size_the_model_accepts():
    model = _pooling_detector(100)  # needs H, W >= 102: 64 fails, 128 runs
    feeds = example_inputs(model, make_session(model, "cpu"))
    assert feeds["x"].shape == (2, 3, 128, 128)
    assert example_inputs(model, make_session(model, "cpu"), dims={"H": 110, "W": 120})["x"].shape == (2, 3, 110, 120)


def test_no_size_that_works_is_a_clear_error_naming_the_dims():
    model = _pooling_detector(1000)
    with pytest.raises(InputError, match="symbolic dims H, W .*--input-shape"):
        example_inputs(model, make_session(model, "cpu"))
