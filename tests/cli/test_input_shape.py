"""--input-shape on prune, groups, inspect, validate and bench, and the dynamic-shape models of issue 8: each is
pruned, passes the checker, keeps its symbolic input dims, and runs in onnxruntime at two different dynamic sizes
where it matches the mask oracle (``validate --oracle`` at those sizes)."""

from __future__ import annotations

import json

import onnx
import pytest
from click.testing import CliRunner
from onnxprune.models import dynamic_shapes

from onnxprune.cli import main

SEQ = dynamic_shapes.SEQ
# model -> (extra prune options, two sets of --input-shape values the pruned model must run at)
CASES = {
    "detector": ([], [["images:1x3x32x32"], ["images:3x3x64x96"]]),
    "sentence_encoder": ([], [[f"{n}:1x7" for n in ("input_ids", "token_type_ids", "attention_mask")],
                              [f"{n}:3x16" for n in ("input_ids", "token_type_ids", "attention_mask")]]),
    "nhwc_face_detector": ([], [["input:1x40x40x3"], ["input:2x64x80x3"]]),
    "baked_transformer": ([], [[f"input_ids:1x{SEQ}"], [f"input_ids:3x{SEQ}"]]),
    "contrib_transpose": ([], [["image:1x3x8x8"], ["image:2x3x16x12"]]),
    "text_recognizer": ([], [["image:1x3x8x10"], ["image:2x3x8x25"]]),
    "rate_switch": ([], [["audio:1x1x20", "high_rate:"], ["audio:2x1x33", "high_rate:"]]),
    "fused_conv": (["--input-shape", "image:2x3x16x16"], [["image:2x3x16x16"], ["image:2x3x16x16"]]),
}


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _invoke(*args: str):
    return CliRunner().invoke(main, ["--quiet", *map(str, args)])


@pytest.mark.parametrize("name", CASES)
def test_dynamic_shape_models_prune_and_match_the_oracle_at_two_sizes(tmp_path, name):
    options, sizes = CASES[name]
    source, output, plan = tmp_path / "in.onnx", tmp_path / "out.onnx", tmp_path / "plan.json"
    model = dynamic_shapes.CASES[name]()
    onnx.save(model, source)
    result = _invoke("prune", source, output, "--plan", plan, *options)
    assert result.exit_code == 0, result.output
    assert "PASSED (mask oracle" in result.output
    assert json.loads(plan.read_text())["groups"], "nothing was pruned"
    pruned = onnx.load(output)
    if name != "fused_conv":  # full_check runs ONNX's shape inference, which does not know FusedConv
        onnx.checker.check_model(pruned, full_check=True)
        # symbolic dims stay symbolic when the user fixed none
        assert [_dims(i) for i in pruned.graph.input] == [_dims(i) for i in model.graph.input]
    else:
        assert _dims(pruned.graph.input[0]) == [2, 3, 16, 16]  # fixed by the user's numbers
    for shapes in sizes:
        given = [arg for value in shapes if not value.endswith(":") for arg in ("--input-shape", value)]
        checked = _invoke("validate", source, output, "--oracle", "--plan", plan, "--json", *given)
        assert checked.exit_code == 0, checked.output
        report = json.loads(checked.output)
        assert report["passed"] and report["oracle"]


def test_a_named_dim_stays_symbolic_and_blocks_nothing(tmp_path):
    source, output = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(dynamic_shapes.sentence_encoder(), source)
    plain = _invoke("groups", source, "--json")
    named = _invoke("groups", source, "--json", *[a for n in ("input_ids", "token_type_ids", "attention_mask")
                                                   for a in ("--input-shape", f"{n}:batchx16")])
    assert plain.exit_code == named.exit_code == 0, named.output
    assert json.loads(named.output)["summary"]["prunable"] == json.loads(plain.output)["summary"]["prunable"] == 2
    result = _invoke("prune", source, output, "--input-shape", "input_ids:batchx16", "--input-shape",
                     "token_type_ids:batchx16", "--input-shape", "attention_mask:batchx16")
    assert result.exit_code == 0, result.output
    assert [_dims(i) for i in onnx.load(output).graph.input] == [["batch", 16]] * 3


def test_numbers_fix_the_written_models_input(tmp_path):
    source, output = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(dynamic_shapes.detector(), source)
    result = _invoke("prune", source, output, "--input-shape", "images:batchx3x32x48")
    assert result.exit_code == 0, result.output
    assert _dims(onnx.load(output).graph.input[0]) == ["batch", 3, 32, 48]


@pytest.mark.parametrize("command", ["prune", "groups", "inspect", "validate", "bench"])
@pytest.mark.parametrize("value", ["images:1,3,32,32", "images", "images:1x3x3 2", ":1x3"])
def test_a_malformed_value_is_a_usage_error_naming_the_form(tmp_path, command, value):
    source = tmp_path / "in.onnx"
    onnx.save(dynamic_shapes.detector(), source)
    args = {"prune": [source, tmp_path / "out.onnx"], "validate": [source, source]}.get(command, [source])
    result = _invoke(command, *args, "--input-shape", value)
    assert result.exit_code == 2, result.output
    assert "NAME:D1xD2x" in result.output and "inconsistent" not in result.output
    assert not (tmp_path / "out.onnx").exists()


def test_bench_prints_the_shapes_it_used(tmp_path):
    source = tmp_path / "in.onnx"
    onnx.save(dynamic_shapes.detector(), source)
    chosen = _invoke("bench", source, "--runs", "2", "--warmup", "0")
    assert chosen.exit_code == 0, chosen.output
    assert "input shapes: images=1x3x64x64" in chosen.output
    given = _invoke("bench", source, "--runs", "2", "--warmup", "0", "--input-shape", "images:batchx3x32x48",
                    "--batch", "2", "--json")
    assert given.exit_code == 0, given.output
    assert json.loads(given.output)["models"][0]["inputs"] == "images=2x3x32x48"


def test_macs_are_counted_at_the_shapes_used_and_say_so(tmp_path):
    source, output, report = tmp_path / "in.onnx", tmp_path / "out.onnx", tmp_path / "report.json"
    onnx.save(dynamic_shapes.detector(), source)
    result = _invoke("prune", source, output, "--report", report)
    assert result.exit_code == 0, result.output
    macs = json.loads(report.read_text())["macs"]
    assert macs["at"] == "images=1x3x64x64" and "at images=1x3x64x64" in result.output
    # stem conv alone: 8 x 3 x 3 x 3 MACs at each of 32 x 32 output positions
    assert macs["before"] > 8 * 27 * 32 * 32 and 0 < macs["after"] < macs["before"]
    inspected = _invoke("inspect", source)
    assert f"{macs['before']:,} MACs per sample at images=1x3x64x64" in inspected.output
    fixed = _invoke("inspect", source, "--input-shape", "images:1x3x128x128", "--json")
    assert json.loads(fixed.output)["macs"] == 4 * macs["before"]
