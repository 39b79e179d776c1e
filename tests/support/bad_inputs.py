"""Run ``onnxprune prune`` on every kind of bad input and write what the user sees as a markdown table.

    python -m tests.support.bad_inputs [docs/troubleshooting.md]

tests/cli/test_robustness_cli.py runs the same cases (and checks exit code 2, one line on stderr, no file left
behind); running this module is how docs/troubleshooting.md is regenerated (the tests never write docs/).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_model(opset: int = 17) -> onnx.ModelProto:
    """A small valid model: Conv -> Relu -> Conv -> GlobalAveragePool, symbolic batch."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("w1", (16, 3, 3, 3)), ("b1", (16,)), ("w2", (8, 16, 1, 1)))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["c"], name="conv2"),
             helper.make_node("GlobalAveragePool", ["c"], ["y"], name="pool")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 1, 1])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@dataclass
class Case:
    """One bad input: ``setup(dir)`` writes the files and returns the command-line arguments after ``prune``."""

    name: str
    setup: Callable[[Path], list[str]]


def _model_file(d: Path, model: onnx.ModelProto | None = None, name: str = "in.onnx") -> Path:
    path = d / name
    onnx.save_model(model or conv_model(), str(path))
    return path


def _external(d: Path) -> Path:
    path = d / "in.onnx"
    onnx.save_model(conv_model(), str(path), save_as_external_data=True, location="in.onnx.data", size_threshold=0)
    return path


def _bytes(data: bytes) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        (d / "in.onnx").write_bytes(data)
        return [str(d / "in.onnx"), str(d / "out.onnx")]
    return setup


def _truncated(d: Path) -> list[str]:
    data = conv_model().SerializeToString()
    return _bytes(data[: len(data) // 2])(d)


def _bitflips(d: Path) -> list[str]:
    data = bytearray(conv_model().SerializeToString())
    for k in range(0, 40):  # flip bits in the graph's first bytes (names, structure), keep the length
        data[k * 7 % len(data)] ^= 0x5A
    return _bytes(bytes(data))(d)


def _not_a_model(d: Path) -> list[str]:
    tensor = numpy_helper.from_array(np.zeros((4, 4), np.float32), "t")
    return _bytes(tensor.SerializeToString())(d)


def _graph_only(d: Path) -> list[str]:
    return _bytes(conv_model().graph.SerializeToString())(d)


def _missing_external(d: Path) -> list[str]:
    path = _external(d)
    os.remove(d / "in.onnx.data")
    return [str(path), str(d / "out.onnx")]


def _short_external(d: Path) -> list[str]:
    path = _external(d)
    data = (d / "in.onnx.data").read_bytes()
    (d / "in.onnx.data").write_bytes(data[: len(data) // 3])
    return [str(path), str(d / "out.onnx")]


def _escaping_external(d: Path) -> list[str]:
    model = onnx.load(str(_external(d)), load_external_data=False)
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = "../../etc/passwd"
    onnx.save_model(model, str(d / "in.onnx"))
    return [str(d / "in.onnx"), str(d / "out.onnx")]


def _big_external(d: Path, damage: str) -> list[str]:
    """A model whose 256 kB weight is memory-mapped from its external data file, then damaged."""
    model = conv_model()
    big = numpy_helper.from_array(np.ones((64, 16, 8, 8), np.float32), "w2")
    model.graph.initializer[2].CopyFrom(big)
    model.graph.node[2].attribute.extend([helper.make_attribute("kernel_shape", [8, 8]),
                                          helper.make_attribute("pads", [4, 4, 3, 3])])
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 64
    path = d / "in.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="in.onnx.data", size_threshold=1024)
    data = d / "in.onnx.data"
    if damage == "missing":
        os.remove(data)
    else:
        data.write_bytes(data.read_bytes()[:100_000])
    return [str(path), str(d / "out.onnx")]


def _damaged_tensor(d: Path) -> list[str]:
    model = conv_model()
    model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:1000]
    return [str(_model_file(d, model)), str(d / "out.onnx")]


def _bad_utf8(d: Path) -> list[str]:
    data = conv_model().SerializeToString().replace(b"relu", b"r\xe9lu")
    return _bytes(data)(d)


def _inconsistent(d: Path) -> list[str]:
    model = conv_model()
    model.graph.node.insert(2, helper.make_node("Add", ["r", "b1"], ["r2"], name="add"))
    model.graph.node[3].input[0] = "r2"  # [N,16,8,8] + [16]: broadcasting fails on the last axis
    return [str(_model_file(d, model)), str(d / "out.onnx")]


def _cycle(d: Path) -> list[str]:
    model = conv_model()
    model.graph.node[0].input[0] = "r"  # conv1 reads relu's output, which it feeds
    return [str(_model_file(d, model)), str(d / "out.onnx")]


def _no_nodes(d: Path) -> list[str]:
    model = conv_model()
    del model.graph.node[:]
    return [str(_model_file(d, model)), str(d / "out.onnx")]


def _dangling_input(d: Path) -> list[str]:
    model = conv_model()
    model.graph.node[1].input[0] = "nowhere"
    return [str(_model_file(d, model)), str(d / "out.onnx")]


def _missing_initializer(d: Path) -> list[str]:
    model = conv_model()
    del model.graph.initializer[2]
    return [str(_model_file(d, model)), str(d / "out.onnx")]


def _unknown_op(d: Path) -> list[str]:
    model = conv_model()
    model.graph.node[1].op_type = "Rellu"
    return [str(_model_file(d, model)), str(d / "out.onnx")]


def _future_opset(d: Path) -> list[str]:
    return [str(_model_file(d, conv_model(opset=99))), str(d / "out.onnx")]


def _no_input_shape(d: Path) -> list[str]:
    model = conv_model()
    model.graph.input[0].type.tensor_type.ClearField("shape")
    return [str(_model_file(d, model)), str(d / "out.onnx")]


def _same_as_input(d: Path) -> list[str]:
    path = _model_file(d)
    return [str(path), str(path)]


def _over_external_data(d: Path) -> list[str]:
    path = _external(d)
    return [str(path), str(d / "in.onnx.data")]


def _missing_dir(d: Path) -> list[str]:
    return [str(_model_file(d)), str(d / "no_such_dir" / "out.onnx")]


def _output_is_dir(d: Path) -> list[str]:
    (d / "out.onnx").mkdir()
    return [str(_model_file(d)), str(d / "out.onnx")]


def _input_is_dir(d: Path) -> list[str]:
    (d / "in.onnx").mkdir()
    return [str(d / "in.onnx"), str(d / "out.onnx")]


def _report_missing_dir(d: Path) -> list[str]:
    return [str(_model_file(d)), str(d / "out.onnx"), "--report", str(d / "no_such_dir" / "report.json")]


def _bad_input_shape(d: Path) -> list[str]:
    return [str(_model_file(d)), str(d / "out.onnx"), "--input-shape", "image:1x3x8x8"]


def _bad_calib(d: Path) -> list[str]:
    np.savez(d / "calib.npz", wrong_name=np.zeros((2, 3, 8, 8), np.float32))
    return [str(_model_file(d)), str(d / "out.onnx"), "--calib", str(d / "calib.npz"), "--criterion", "activation"]


CASES = [
    Case("input file does not exist", lambda d: [str(d / "in.onnx"), str(d / "out.onnx")]),
    Case("input is a directory", _input_is_dir),
    Case("empty file", _bytes(b"")),
    Case("not protobuf (text)", _bytes(b"hello, this is not a model\n")),
    Case("truncated model (first half)", _truncated),
    Case("model with flipped bytes", _bitflips),
    Case("valid protobuf, not a model (a TensorProto)", _not_a_model),
    Case("valid protobuf, not a model (a GraphProto)", _graph_only),
    Case("model without nodes", _no_nodes),
    Case("external-data file missing", _missing_external),
    Case("external-data file too short", _short_external),
    Case("external-data file of a memory-mapped weight missing", lambda d: _big_external(d, "missing")),
    Case("external-data file of a memory-mapped weight too short", lambda d: _big_external(d, "short")),
    Case("external-data path leaves the model's directory", _escaping_external),
    Case("tensor data shorter than its shape", _damaged_tensor),
    Case("name that is not UTF-8 text", _bad_utf8),
    Case("shapes that do not fit (Add of [N,16,8,8] and [16])", _inconsistent),
    Case("node input produced by nothing", _dangling_input),
    Case("graph with a cycle", _cycle),
    Case("weight initializer removed", _missing_initializer),
    Case("unknown op type", _unknown_op),
    Case("opset newer than onnx knows", _future_opset),
    Case("graph input without a shape", _no_input_shape),
    Case("--input-shape names no graph input", _bad_input_shape),
    Case("--calib arrays not named like the inputs", _bad_calib),
    Case("output path equal to the input", _same_as_input),
    Case("output path equal to the input's external-data file", _over_external_data),
    Case("output in a missing directory", _missing_dir),
    Case("output path is a directory", _output_is_dir),
    Case("--report in a missing directory", _report_missing_dir),
]


@dataclass
class Outcome:
    """What one case showed: exit code, stderr lines that are not progress lines, files before and after."""

    case: str
    exit_code: int
    message: str
    stderr_lines: int
    files_before: list[str]
    files_after: list[str]
    inputs_unchanged: bool


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(d.rglob("*"))}


def run_case(case: Case, workdir: Path) -> Outcome:
    """Set the case up in a fresh directory under ``workdir``, run ``onnxprune prune`` in-process, and record."""
    from click.testing import CliRunner

    from onnxprune.cli import main

    d = Path(tempfile.mkdtemp(dir=workdir))
    args = case.setup(d)
    before = _snapshot(d)
    result = CliRunner().invoke(main, ["prune", *args], prog_name="onnxprune")
    after = _snapshot(d)
    lines = [line for line in result.stderr.splitlines() if line and not re.match(r"\[\s*[\d.]+s\]", line)]
    return Outcome(case.name, result.exit_code, " / ".join(lines), len(lines), sorted(before), sorted(after),
                   all(after.get(name) == data for name, data in before.items()))


def run_all(workdir: Path) -> list[Outcome]:
    """Every case, in order."""
    return [run_case(case, workdir) for case in CASES]


def markdown(outcomes: list[Outcome], workdir: Path | None = None) -> str:
    """The troubleshooting table (temporary directory names shown as ``DIR``)."""
    rows = ["| case | what the user sees (stderr) | exit code |", "|---|---|---|"]
    for o in outcomes:
        message = o.message
        if workdir is not None:
            message = re.sub(re.escape(str(workdir)) + r"/[^/\s]+", "DIR", message)
        message = message.replace("|", "\\|")
        rows.append(f"| {o.case} | `{message}` | {o.exit_code} |")
    return "\n".join(rows) + "\n"


HEADER = """# Troubleshooting: bad input and what onnxprune says

Generated by `python benchmarks/bad_inputs_table.py` (tests/test_robustness_cli.py runs the same cases and checks
them). Every case ends with one line on stderr and exit code 2; no output file is left behind and the input files
are never modified. `--debug` (or `ONNXPRUNE_DEBUG=1`) shows the full traceback instead of the one line.
DIR stands for the directory the files were in.

"""


def main(argv: list[str]) -> None:
    target = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = run_all(Path(tmp))
        text = HEADER + markdown(outcomes, Path(tmp))
    target.write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
