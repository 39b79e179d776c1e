"""The OpenVINO runtime (onnxprune.runtime.openvino) behind make_session(runtime='openvino'): the session answers
like onnxruntime's (names, partial shapes with the ONNX dim names, types, outputs), comparisons and the benchmark
run through it, and a missing package or a provider combined with it is a ProviderError."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from onnxprune.errors import ProviderError, ValidationError
from onnxprune.ir.export import export_graph
from onnxprune.runtime import check_runtime, example_inputs, make_session, openvino
from onnxprune.validation.bench import benchmark
from onnxprune.validation.comparison import compare
from tests.support.tiny_models import classifier

ov = pytest.importorskip("openvino")

TOKENS = onnx.parser.parse_model("""
<ir_version: 8, opset_import: ["" : 17]>
tokens (int64[batch, seq] ids, float[batch, seq] mask) => (float[batch, seq, 4] y, int64[batch, seq] same)
    <float[10, 4] table = {0.0, 0.1, 0.2, 0.3, 1.0, 1.1, 1.2, 1.3, 2.0, 2.1, 2.2, 2.3, 3.0, 3.1, 3.2, 3.3, 4.0, 4.1,
                           4.2, 4.3, 5.0, 5.1, 5.2, 5.3, 6.0, 6.1, 6.2, 6.3, 7.0, 7.1, 7.2, 7.3, 8.0, 8.1, 8.2, 8.3,
                           9.0, 9.1, 9.2, 9.3}, int64[1] axes = {-1}> {
    e = Gather(table, ids)
    m = Unsqueeze(mask, axes)
    y = Mul(e, m)
    same = Identity(ids)
}
""")


@pytest.fixture
def weight() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((4, 6))


def test_session_describes_inputs_and_outputs_like_onnxruntime():
    session = make_session(TOKENS, runtime="openvino")
    reference = make_session(TOKENS, "cpu")
    assert session.get_providers() == ["OpenVINO CPU"]
    for got, want in zip(session.get_inputs() + session.get_outputs(),
                         reference.get_inputs() + reference.get_outputs(), strict=True):
        assert (got.name, got.type) == (want.name, want.type)
        assert got.shape == want.shape  # dynamic dims read from OpenVINO's partial shape, named as in the file
    assert session.get_inputs()[0].shape == ["batch", "seq"]
    assert session.get_outputs()[0].shape == ["batch", "seq", 4]


def test_session_runs_like_onnxruntime():
    session = make_session(TOKENS, runtime="openvino")
    feeds = example_inputs(TOKENS, session, batch=3, dims={"seq": 5})
    assert feeds["ids"].shape == (3, 5) and feeds["ids"].max() < 10  # ids below the table, seq by name
    got, want = session.run(None, feeds), make_session(TOKENS, "cpu").run(None, feeds)
    assert [g.dtype for g in got] == [np.float32, np.int64]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6)
    only = session.run(["same"], feeds)
    assert len(only) == 1 and np.array_equal(only[0], feeds["ids"])


def test_session_reads_models_with_external_data(weight):
    graph = gs.import_onnx(classifier(weight))
    exported = export_graph(graph, external_threshold=0)  # the weight goes to export's private data folder
    assert exported.data_dir is not None
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    got = make_session(exported, runtime="openvino").run(None, {"x": x})[0]
    np.testing.assert_allclose(got, np.maximum(x @ weight.astype(np.float32), 0), rtol=1e-5, atol=1e-6)


def test_compare_on_openvino_names_both_runtimes_and_catches_a_changed_weight(weight):
    same = compare(classifier(weight), classifier(weight), batch=8, runtime="openvino")
    assert same.passed and same.provider == "OpenVINO CPU"
    assert same.reference_provider == "CPUExecutionProvider"
    assert "OpenVINO CPU; reference on onnxruntime CPUExecutionProvider" in same.format()
    assert same.to_dict()["reference_provider"] == "CPUExecutionProvider"
    altered = weight.copy()
    altered[:, 0] += 0.5
    changed = compare(classifier(weight), classifier(altered), batch=8, runtime="openvino")
    assert not changed.passed and changed.max_abs_diff > changed.tolerance
    on_ort = compare(classifier(weight), classifier(weight), batch=8)
    assert on_ort.reference_provider == "" and "reference on" not in on_ort.format()


def test_compare_on_openvino_when_openvino_cannot_load_the_model(weight):
    broken = classifier(weight)
    broken.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(ValidationError, match="openvino cannot run the pruned model"):
        compare(classifier(weight), broken, batch=2, runtime="openvino")


def test_benchmark_on_openvino(weight):
    report = benchmark([classifier(weight), classifier(weight[:, :3])], batch=4, runs=5, warmup=1,
                       runtime="openvino")
    d = report.to_dict()
    assert d["runtime"] == "openvino" and d["provider"] == "OpenVINO CPU" and d["spinning"] is None
    assert len(report.models[0].times_ms) == 5 and all(m["min_ms"] > 0 for m in d["models"])
    assert d["speedup"] > 0 and report.format_table().startswith("OpenVINO CPU, batch 4")
    assert benchmark([classifier(weight)], provider="cpu", runs=2, warmup=0).to_dict()["runtime"] == "onnxruntime"


def test_benchmark_on_openvino_feeds_symbolic_dims_by_name():
    report = benchmark([TOKENS], batch=2, runs=2, warmup=1, runtime="openvino", dims={"seq": 7})
    assert report.runs == 2


@pytest.mark.parametrize("provider", ["cpu", "cuda"])
def test_a_provider_with_openvino_is_a_provider_error(weight, provider):
    with pytest.raises(ProviderError, match=f"--provider {provider} .* does not apply to --runtime openvino"):
        make_session(classifier(weight), provider, runtime="openvino")
    with pytest.raises(ProviderError, match="does not apply"):
        benchmark([classifier(weight)], provider=provider, runtime="openvino")


def test_unknown_runtime_is_a_provider_error():
    with pytest.raises(ProviderError, match="unknown runtime 'tvm'"):
        check_runtime("tvm")


def test_openvino_not_installed_is_a_provider_error(monkeypatch, weight):
    openvino.openvino_module.cache_clear()
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    try:
        with pytest.raises(ProviderError, match="pip install openvino"):
            make_session(classifier(weight), runtime="openvino")
        assert openvino.openvino_version() is None
    finally:
        openvino.openvino_module.cache_clear()
