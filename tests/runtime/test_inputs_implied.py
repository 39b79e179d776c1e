"""Inputs implied by the graph, in order after the user's shapes: integer inputs below the tables they index, masks
and type ids in their valid range, spatial dims at a multiple of the total stride, the export's own hints (a
sequence length baked into Reshape targets); else an error naming the dims to set."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxprune.models import dynamic_shapes

from onnxprune.runtime import make_session
from onnxprune.runtime.inputs import (
    InputError,
    describe_feeds,
    dims_from_shapes,
    example_inputs,
    export_hints,
    integer_bounds,
    spatial_candidates,
    total_stride,
)


def _run(model, **kwargs):
    session = make_session(model, "cpu")
    feeds = example_inputs(model, session, **kwargs)
    session.run(None, feeds)  # the chosen inputs really run
    return feeds


def test_detector_gets_a_multiple_of_its_total_stride():
    model = dynamic_shapes.detector()
    assert total_stride(model) == 4 and all(c % 4 == 0 for c in spatial_candidates(model)[:3])
    assert _run(model)["images"].shape == (2, 3, 64, 64)


def test_spatial_candidates_grow_for_a_stride_beyond_them():
    convs = [helper.make_node("Conv", [f"h{k}", "w"], [f"h{k + 1}"], strides=[4, 4]) for k in range(4)]  # 256
    graph = helper.make_graph(convs, "m", [helper.make_tensor_value_info("h0", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("h4", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")])
    assert spatial_candidates(helper.make_model(graph))[:2] == (256, 512)


def test_sentence_encoder_type_ids_below_the_two_row_table_and_mask_in_range():
    model = dynamic_shapes.sentence_encoder()
    assert integer_bounds(model) == {"input_ids": 50, "token_type_ids": 2}
    feeds = _run(model, batch=3)
    assert feeds["token_type_ids"].max() <= 1 and set(np.unique(feeds["attention_mask"])) <= {0, 1}
    assert feeds["input_ids"].shape == (3, 16) and feeds["input_ids"].max() < 50


def test_nhwc_face_detector_gets_spatial_sizes_its_first_conv_accepts():
    assert _run(dynamic_shapes.nhwc_face_detector())["input"].shape == (2, 64, 64, 3)


def test_baked_sequence_length_comes_from_the_exports_own_hints():
    model = dynamic_shapes.baked_transformer()
    assert export_hints(model)[0] == dynamic_shapes.SEQ
    assert _run(model, batch=3)["input_ids"].shape == (3, dynamic_shapes.SEQ)


def test_the_users_shapes_come_first_and_names_stay_free():
    model = dynamic_shapes.detector()
    assert _run(model, shapes={"images": [1, 3, 32, 48]})["images"].shape == (1, 3, 32, 48)
    assert _run(model, batch=3, shapes={"images": ["n", 3, 32, 48]})["images"].shape == (3, 3, 32, 48)
    specs = make_session(model, "cpu").get_inputs()
    assert describe_feeds(_run(model, batch=1)) == "images=1x3x64x64" and specs[0].shape[2] == "height"


def test_shapes_that_do_not_fit_the_inputs_are_errors():
    model = dynamic_shapes.detector()
    session = make_session(model, "cpu")
    with pytest.raises(InputError, match="names 'x', but the model inputs are"):
        example_inputs(model, session, shapes={"x": [1, 3, 8, 8]})
    with pytest.raises(InputError, match="3 dims given, but the input has 4"):
        example_inputs(model, session, shapes={"images": [1, 3, 8]})
    assert dims_from_shapes([], {}) == {}


def test_scatter_indices_stay_below_the_target_size():
    graph = helper.make_graph(
        [helper.make_node("ScatterElements", ["zero", "idx", "src"], ["y"], axis=0, reduction="add")], "m",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["E", 4]),
         helper.make_tensor_value_info("src", TensorProto.FLOAT, ["E", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 4])],
        [numpy_helper.from_array(np.zeros((5, 4), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    assert integer_bounds(model) == {"idx": 5}
    assert _run(model)["idx"].max() < 5


def test_when_nothing_runs_the_error_names_the_dims_and_an_input_shape_to_give():
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["tokens", "target"], ["y"])], "m",
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", "sequence"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([-1, 5000], np.int64), "target")])  # runs at sequence 5000 only
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(InputError, match=r"symbolic dims sequence \(tried sequence: 16, 8.*--input-shape "
                                         r"tokens:batchxSEQUENCE with numbers for SEQUENCE"):
        example_inputs(model, make_session(model, "cpu"))


def test_a_dim_written_as_a_sum_is_sized_from_its_parts():
    # optimum's decoders: attention_mask [batch, past_sequence_length + sequence_length] beside the cache and ids
    import onnx

    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]>
    agraph (float[B,3,P,5] past, float[B,3,S,5] x, int64[B,"P + S"] mask) => (float[B,3,T,5] y)
      <int64[2] axes = {1, 3}> {
      cat = Concat <axis=2> (past, x)
      m = Cast <to=1> (mask)
      u = Unsqueeze (m, axes)
      y = Mul (cat, u)
    }""")
    feeds = _run(model)
    assert feeds["mask"].shape[1] == feeds["past"].shape[2] + feeds["x"].shape[2], describe_feeds(feeds)
