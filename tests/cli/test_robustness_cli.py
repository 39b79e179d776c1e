"""Every kind of bad input through ``onnxprune prune``: exit code 2, one clear line on stderr (click's own usage
errors for paths that are directories), no output file left behind, inputs untouched. The cases live in
``tests.support.bad_inputs``, which also regenerates docs/troubleshooting.md when run as a script."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from onnxprune.cli import main
from tests.support import bad_inputs as table

USAGE_ERRORS = {"input is a directory", "output path is a directory"}  # refused by click before onnxprune runs


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bad_inputs")
    results = table.run_all(workdir)
    return {o.case: o for o in results}


@pytest.mark.parametrize("case", [c.name for c in table.CASES])
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(outcomes, case):
    o = outcomes[case]
    assert o.exit_code == 2, o
    if case in USAGE_ERRORS:
        assert "Error: Invalid value" in o.message
    else:
        assert o.stderr_lines == 1 and o.message.startswith("onnxprune: error: "), o
        assert "Traceback" not in o.message and "probably a bug" not in o.message, o
    assert o.files_after == o.files_before, o  # no output, no temporary, nothing deleted
    assert o.inputs_unchanged, o


def test_unexpected_exceptions_are_one_line_and_debug_shows_the_traceback(monkeypatch, tmp_path):
    import onnxprune.cli

    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(onnxprune.cli, "prune_file", broken)
    source = tmp_path / "in.onnx"
    table._model_file(tmp_path)
    result = CliRunner().invoke(main, ["prune", str(source), str(tmp_path / "out.onnx")])
    assert result.exit_code == 2
    assert result.stderr.startswith("onnxprune: error: unexpected KeyError: 'boom' (probably a bug")
    assert result.stderr.count("\n") == 1
    debug = CliRunner().invoke(main, ["prune", str(source), str(tmp_path / "out.onnx"), "--debug"])
    assert isinstance(debug.exception, KeyError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx"]


def test_a_failure_after_saving_removes_the_new_output(monkeypatch, tmp_path):
    import onnxprune.pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("counting failed")

    monkeypatch.setattr(onnxprune.pipeline, "count_params", broken)
    source = table._model_file(tmp_path)
    result = CliRunner().invoke(main, ["prune", str(source), str(tmp_path / "out.onnx")])
    assert result.exit_code == 2 and "counting failed" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx"]
