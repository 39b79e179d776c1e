"""Fuzzing ``onnxprune prune``: random valid graphs (tests/graphgen.py) and random corruptions of real models (bit
flips, truncation, deleted nodes, renamed inputs, wrong value_info shapes, removed initializers, ...). Every run
must end one of two ways: success with a written model that passes onnx.checker, loads in onnxruntime and matches
the mask oracle; or exit code 2 with one line on stderr and no file written. Never a traceback, never exit 1.

The CI test runs a fixed budget (160 corruptions, 15 random graphs: about 10 s); benchmarks/fuzz_long.py runs the
same cases for minutes and counts outcomes.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

from tests.support.graphgen import build_random_cnn, cnn_choices

# -- corruptions: each takes a model and a generator, returns the bytes to feed onnxprune ---------------------------


def _bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def bit_flips(model, rng) -> bytes:
    data = bytearray(_bytes(model))
    for _ in range(int(rng.integers(1, 9))):
        k = int(rng.integers(len(data)))
        data[k] ^= 1 << int(rng.integers(8))
    return bytes(data)


def truncate(model, rng) -> bytes:
    data = _bytes(model)
    return data[: int(rng.integers(len(data)))]


def insert_bytes(model, rng) -> bytes:
    data = _bytes(model)
    k = int(rng.integers(len(data)))
    return data[:k] + rng.bytes(int(rng.integers(1, 16))) + data[k:]


def delete_node(model, rng) -> bytes:
    model = _copy(model)
    del model.graph.node[int(rng.integers(len(model.graph.node)))]
    return _bytes(model)


def _names(model) -> list[str]:
    names = [i.name for i in model.graph.input] + [t.name for t in model.graph.initializer]
    return names + [o for n in model.graph.node for o in n.output]


def rename_input(model, rng) -> bytes:
    model = _copy(model)
    node = model.graph.node[int(rng.integers(len(model.graph.node)))]
    if node.input:
        k = int(rng.integers(len(node.input)))
        names = _names(model)
        node.input[k] = names[int(rng.integers(len(names)))] if rng.random() < 0.7 else "renamed_" + node.input[k]
    return _bytes(model)


def swap_inputs(model, rng) -> bytes:
    model = _copy(model)
    node = model.graph.node[int(rng.integers(len(model.graph.node)))]
    if len(node.input) > 1:
        a, b = rng.choice(len(node.input), 2, replace=False)
        node.input[int(a)], node.input[int(b)] = node.input[int(b)], node.input[int(a)]
    return _bytes(model)


def _random_dims(rng, rank: int) -> list:
    return [int(rng.integers(1, 40)) if rng.random() < 0.8 else "D" for _ in range(rank)]


def wrong_value_info(model, rng) -> bytes:
    """A value_info entry with a wrong shape (or type) for a random activation."""
    model = _copy(model)
    outputs = [o for n in model.graph.node for o in n.output]
    name = outputs[int(rng.integers(len(outputs)))]
    elem = onnx.TensorProto.FLOAT if rng.random() < 0.8 else onnx.TensorProto.INT64
    del model.graph.value_info[:]
    model.graph.value_info.append(helper.make_tensor_value_info(name, elem, _random_dims(rng, int(rng.integers(5)))))
    return _bytes(model)


def wrong_input_shape(model, rng) -> bytes:
    model = _copy(model)
    inp = model.graph.input[0]
    inp.type.tensor_type.shape.Clear()
    for dim in _random_dims(rng, int(rng.integers(1, 6))):
        entry = inp.type.tensor_type.shape.dim.add()
        if isinstance(dim, str):
            entry.dim_param = dim
        else:
            entry.dim_value = dim
    return _bytes(model)


def remove_initializer(model, rng) -> bytes:
    model = _copy(model)
    if model.graph.initializer:
        del model.graph.initializer[int(rng.integers(len(model.graph.initializer)))]
    return _bytes(model)


def reshape_initializer(model, rng) -> bytes:
    """An initializer replaced by one of another shape (e.g. a weight with the wrong channel count)."""
    model = _copy(model)
    if model.graph.initializer:
        k = int(rng.integers(len(model.graph.initializer)))
        old = onnx.numpy_helper.to_array(model.graph.initializer[k])
        dims = [max(1, d + int(rng.integers(-2, 3))) for d in old.shape]
        new = rng.standard_normal(dims).astype(old.dtype) if old.dtype.kind == "f" else np.ones(dims, old.dtype)
        model.graph.initializer[k].CopyFrom(onnx.numpy_helper.from_array(new, model.graph.initializer[k].name))
    return _bytes(model)


def change_attribute(model, rng) -> bytes:
    model = _copy(model)
    nodes = [n for n in model.graph.node if n.attribute]
    if nodes:
        attr = nodes[int(rng.integers(len(nodes)))].attribute
        a = attr[int(rng.integers(len(attr)))]
        if a.type == onnx.AttributeProto.INT:
            a.i = int(rng.integers(-3, 5))
        elif a.type == onnx.AttributeProto.INTS and a.ints:
            a.ints[int(rng.integers(len(a.ints)))] = int(rng.integers(-3, 5))
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = float(rng.standard_normal())
    return _bytes(model)


def shuffle_nodes(model, rng) -> bytes:
    model = _copy(model)
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes[k] for k in rng.permutation(len(nodes)))
    return _bytes(model)


def change_opset(model, rng) -> bytes:
    model = _copy(model)
    model.opset_import[0].version = int(rng.integers(1, onnx.defs.onnx_opset_version() + 3))
    return _bytes(model)


def duplicate_output(model, rng) -> bytes:
    model = _copy(model)
    a, b = rng.choice(len(model.graph.node), 2, replace=len(model.graph.node) < 2)
    model.graph.node[int(a)].output[0] = model.graph.node[int(b)].output[0]
    return _bytes(model)


CORRUPTIONS: dict[str, Callable] = {f.__name__: f for f in (
    bit_flips, truncate, insert_bytes, delete_node, rename_input, swap_inputs, wrong_value_info, wrong_input_shape,
    remove_initializer, reshape_initializer, change_attribute, shuffle_nodes, change_opset, duplicate_output)}


# -- running one case ------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """How one run ended: 'ok', 'refused' (exit 2 with one line), 'crash' (traceback, unexpected exception,
    or other exit code) or 'invalid' (exit 0 or 1 with a model that is wrong). ``message`` is stderr's line."""

    kind: str
    message: str
    detail: str = ""


def _input_checker_error(path: Path) -> str | None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        return str(exc)
    return None


def run_case(data: bytes, workdir: Path, ratio: float = 0.5) -> Outcome:
    """Write ``data`` as a model, run ``onnxprune prune`` on it in-process, and judge the result."""
    from click.testing import CliRunner

    from onnxprune.cli import main

    d = Path(tempfile.mkdtemp(dir=workdir))
    src, out, report = d / "in.onnx", d / "out.onnx", d / "report.json"
    src.write_bytes(data)
    result = CliRunner().invoke(main, ["prune", str(src), str(out), "--ratio", str(ratio), "--report", str(report)])
    lines = [line for line in result.stderr.splitlines() if line and not re.match(r"\[\s*[\d.]+s\]", line)]
    message = " / ".join(lines)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return Outcome("crash", message, f"{type(result.exception).__name__}: {result.exception}")
    if src.read_bytes() != data:
        return Outcome("invalid", message, "the input file was modified")
    if result.exit_code == 2:
        if len(lines) != 1 or not message.startswith("onnxprune: error: ") or "probably a bug" in message:
            return Outcome("crash", message, "exit 2 without one clean line")
        if sorted(p.name for p in d.iterdir()) != ["in.onnx"]:
            return Outcome("invalid", message, f"files left behind: {sorted(p.name for p in d.iterdir())}")
        return Outcome("refused", message)
    if result.exit_code != 0:
        return Outcome("invalid" if result.exit_code == 1 else "crash", message, f"exit code {result.exit_code}")
    return _judge_output(src, out, report, message)


def _judge_output(src: Path, out: Path, report: Path, message: str) -> Outcome:
    from onnxprune.runtime import make_session

    if not out.is_file():
        return Outcome("invalid", message, "exit 0 but no output")
    validation = json.loads(report.read_text())["validation"]
    if validation.get("passed") is False:
        return Outcome("invalid", message, f"validation failed: {validation}")
    error = _input_checker_error(out)
    if error is not None and error != _input_checker_error(src):
        return Outcome("invalid", message, f"output fails onnx.checker: {error}")
    try:
        make_session(str(out), "cpu")
    except Exception as exc:
        return Outcome("invalid", message, f"onnxruntime cannot load the output: {exc}")
    return Outcome("ok", message, "inherited checker error" if error else "")


REFUSAL_KINDS = [
    ("not protobuf / truncated", r"not a valid ONNX protobuf"), ("no graph nodes", r"holds no ONNX graph nodes"),
    ("damaged names or data", r"not valid UTF-8|needs \d+: the file is damaged"),
    ("shape inference crashed", r"shape inference crashed"),
    ("undefined tensor", r"which no node, initializer or graph input defines|is defined by no node"),
    ("cycle", r"has a cycle"), ("defined twice", r"is defined twice"),
    ("unknown op / opset", r"does not define|imports opset|no default-domain"),
    ("inconsistent shapes", r"the model is inconsistent"),
    ("shape not inferred", r"could not be inferred|has no shape"),
    ("external data", r"external data"), ("onnxruntime rejects", r"onnxruntime cannot (load|run)"),
    ("checker rejects", r"fails onnx.checker"),
    ("graph structure", r"cannot (import|process) the graph|cannot write the graph back"),
]


def refusal_kind(message: str) -> str:
    """A short name for a refusal message (for the long run's counts)."""
    message = re.sub(r"^onnxprune: error: \S*in\.onnx: ", "onnxprune: error: ", message)
    for kind, pattern in REFUSAL_KINDS:
        if re.search(pattern, message):
            return kind
    return "other: " + message.removeprefix("onnxprune: error: ")[:60]


def base_models() -> dict[str, onnx.ModelProto]:
    """Small real models to corrupt: random CNNs from graphgen and the opset test's CNN at two opsets."""
    from tests.ir.test_opsets import build_cnn

    models = {"cnn_opset11": build_cnn(11), "cnn_opset17": build_cnn(17)}
    for k, choices in enumerate([[("conv", 3), ("bn", 0), ("act", 2), ("split", 5), ("concat", 1)],
                                 [("dwconv", 0), ("add", 1), ("mul_se", 0), ("gconv", 2), ("pool", 1)]]):
        models[f"random_cnn{k}"] = build_random_cnn(choices, seed=k)
    return models


def corrupted_case(models: dict[str, onnx.ModelProto], seed: int) -> tuple[str, bytes]:
    """The case ``seed``: (description, bytes) of one corruption of one base model."""
    rng = np.random.default_rng(seed)
    name = sorted(models)[int(rng.integers(len(models)))]
    kind = sorted(CORRUPTIONS)[int(rng.integers(len(CORRUPTIONS)))]
    return f"{kind}({name}, seed {seed})", CORRUPTIONS[kind](models[name], rng)


# -- the CI tests ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def models():
    return base_models()


def test_every_corruption_kind_is_refused_or_pruned_correctly(models, tmp_path):
    failures = []
    for seed in range(160):
        what, data = corrupted_case(models, seed)
        outcome = run_case(data, tmp_path, ratio=0.5)
        if outcome.kind not in ("ok", "refused"):
            failures.append((what, outcome))
    assert not failures, "\n".join(f"{w}: {o}" for w, o in failures)


def test_uncorrupted_base_models_prune_cleanly(models, tmp_path):
    for name, model in models.items():
        outcome = run_case(model.SerializeToString(), tmp_path)
        assert outcome.kind == "ok" and not outcome.detail, (name, outcome)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(choices=cnn_choices(), seed=st.integers(0, 2**16), ratio=st.sampled_from([0.1, 0.3, 0.5, 0.8]))
def test_random_valid_graphs_prune_through_the_cli(tmp_path, choices, seed, ratio):
    outcome = run_case(build_random_cnn(choices, seed).SerializeToString(), tmp_path, ratio)
    assert outcome.kind == "ok", outcome
