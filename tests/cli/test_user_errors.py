"""User errors are exit 2 with one line saying what to do; options that match or change nothing are warned about."""

from __future__ import annotations

from click.testing import CliRunner

from onnxprune.cli import main
from tests.support import bad_inputs


def test_malformed_input_shape_is_a_usage_error_naming_the_form(tmp_path):
    source = bad_inputs._model_file(tmp_path)
    for value in ("x:1,3,32,32", "x", "x:1x3x3 2"):
        result = CliRunner().invoke(main, ["groups", str(source), "--input-shape", value])
        assert result.exit_code == 2, result.output
        assert "NAME:D1xD2x" in result.output and "Traceback" not in result.output


def test_options_that_change_nothing_are_warned_about(tmp_path):
    source = bad_inputs._model_file(tmp_path)
    result = CliRunner().invoke(main, ["prune", str(source), str(tmp_path / "out.onnx"), "--ignore", "nomatch*",
                                       "--heads-ratio", "0.5"])
    assert result.exit_code == 0, result.output
    assert "warning: --ignore 'nomatch*' matches no node" in result.stderr
    assert "warning: --heads-ratio changes nothing" in result.stderr
    quiet = CliRunner().invoke(main, ["prune", str(source), str(tmp_path / "out2.onnx"), "--ignore", "conv1"])
    assert quiet.exit_code == 0 and "matches no node" not in quiet.stderr, quiet.stderr


def test_nothing_pruned_is_said_plainly_with_the_reason(tmp_path):
    source = bad_inputs._model_file(tmp_path)
    result = CliRunner().invoke(main, ["prune", str(source), str(tmp_path / "out.onnx"), "--ignore", "*"])
    assert result.exit_code == 0, result.output
    assert "warning: nothing was pruned: --ignore leaves no prunable group" in result.stderr
    pruned = CliRunner().invoke(main, ["prune", str(source), str(tmp_path / "out2.onnx")])
    assert pruned.exit_code == 0 and "nothing was pruned" not in pruned.stderr, pruned.stderr


def test_a_pytorch_checkpoint_given_as_the_model_gets_a_hint(tmp_path):
    import torch

    checkpoint = tmp_path / "model.pt"
    torch.save({"weight": torch.ones(2)}, checkpoint)
    result = CliRunner().invoke(main, ["prune", str(checkpoint), str(tmp_path / "out.onnx")])
    assert result.exit_code == 2
    assert "torch.onnx.export" in result.stderr and result.stderr.count("\n") == 1, result.stderr
