"""Decoders exported by optimum (``text-generation-with-past``: one model, KV cache as past_key_values.*/present.*
graph inputs/outputs, position_ids, no If nodes), plain and after onnxruntime's transformer optimizer: KV groups
(whole query heads for MHA) and MLP width prune with the cache I/O allowed, the files pass the checks, their logits
equal the mask oracle's, and a greedy generation loop that feeds the KV cache back in onnxruntime gives the
oracle's tokens. The exporter runs from its own site directory (tests/genai/optimum_export.py); without it these
tests skip."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import onnxprune
from onnxprune.cli import main
from onnxprune.genai import cache_io_axes, compare_decoder, decoder_feeds
from onnxprune.genai.decoder import head_size_of
from onnxprune.runtime import make_session
from onnxprune.validation.checks import check_model
from onnxprune.validation.oracle import masked_model
from tests.genai import optimum_export
from tests.genai.builders import SIZES, VOCAB

HEADS, KV, WIDTH = SIZES["num_attention_heads"], SIZES["num_key_value_heads"], SIZES["intermediate_size"]
# (heads, KV heads) after --heads-ratio 0.25: Llama (MHA) loses one of 4 heads, the GQA models one of 2 KV groups
# (with its 2 query heads); --ratio 0.3 keeps 89 of 128 MLP channels
EXPECTED = {"llama": (HEADS - 1, HEADS - 1), "qwen2": (HEADS // KV, 1), "phi3": (HEADS // KV, 1)}
_CACHE: dict = {}


@pytest.fixture(scope="session")
def optimum_model(tmp_path_factory):
    """optimum_model(kind, optimized) -> model.onnx exported by optimum (cached per session), or its
    ORT-optimized copy; skips when optimum's site directory is not installed."""
    reason = optimum_export.missing_reason()
    if reason:
        pytest.skip(reason)

    def get(kind: str, optimized: bool):
        if not _CACHE:  # every kind in one child process: the exporter's import is most of the time
            root = tmp_path_factory.mktemp("optimum")
            pairs = [(optimum_export.save_hf_model(k, root / k / "hf"), root / k / "onnx") for k in EXPECTED]
            _CACHE.update(zip(EXPECTED, optimum_export.export(pairs)))
        plain = _CACHE[kind]
        if not optimized:
            return plain
        if (kind, True) not in _CACHE:
            _CACHE[kind, True] = optimum_export.ort_optimize(plain, plain.with_name("model_opt.onnx"))
        return _CACHE[kind, True]

    return get


def _prune(src):
    return onnxprune.prune(str(src), ratio=0.3, heads_ratio=0.25, no_hidden=True,
                           allowed_io_axes=tuple(sorted(cache_io_axes(src))))


def _cache_heads(model: onnx.ModelProto) -> set[int]:
    return {v.type.tensor_type.shape.dim[1].dim_value for v in model.graph.input if v.name.startswith("past")}


def _greedy(model, head_size: int, prompt: np.ndarray, steps: int) -> tuple[list[int], list[np.ndarray]]:
    """Greedy decoding with the KV cache fed back (present.* -> past_key_values.*) in onnxruntime: the tokens and
    the last-position logits of every step."""
    session = make_session(model, "cpu", fuse=False)
    names = [o.name.removesuffix("__masked") for o in session.get_outputs()]  # the oracle renames masked outputs
    wanted = {i.name for i in session.get_inputs()}
    feeds = decoder_feeds(session, head_size, prompt)
    tokens, logits = [], []
    for _ in range(steps):
        out = dict(zip(names, session.run(None, feeds)))
        logits.append(out["logits"][0, -1])
        token = int(out["logits"][0, -1].argmax())
        tokens.append(token)
        seen = feeds["attention_mask"].shape[1]
        feeds = {"input_ids": np.array([[token]], dtype=np.int64),
                 "attention_mask": np.ones((1, seen + 1), dtype=np.int64),
                 "position_ids": np.array([[seen]], dtype=np.int64)}
        feeds.update({n.replace("present", "past_key_values"): v for n, v in out.items() if n.startswith("present")})
        feeds = {k: v for k, v in feeds.items() if k in wanted}
    return tokens, logits


def _check_pruned(src, tmp_path, kind: str, optimized: bool) -> None:
    pruned = _prune(src)
    check = pruned.validation
    assert check["passed"] and check["oracle"] and "empty KV cache" in check["inputs"], check
    out = tmp_path / "model.onnx"
    pruned.save(out)
    check_model(out, original=(lambda: src) if optimized else None)  # contrib ops: only what the checker can check
    if not optimized:
        onnx.checker.check_model(str(out), full_check=True)
    model = onnx.load(str(out))
    heads, kv = EXPECTED[kind]
    assert _cache_heads(model) == {kv}
    dims = {d for i in model.graph.initializer if len(i.dims) == 2 for d in i.dims}
    assert WIDTH not in dims and int(WIDTH * 0.7) in dims, dims  # MLP 128 -> 89 (Phi-3's gate_up 256 -> 178)
    head_size = head_size_of(onnx.load(str(src), load_external_data=False))
    assert head_size == SIZES["hidden_size"] // HEADS
    oracle = masked_model(pruned.plan.depgraph, pruned.plan.groups)
    found = compare_decoder(oracle, str(out), head_size, VOCAB)
    assert found.passed, found.format()
    drift = compare_decoder(str(src), str(out), head_size, VOCAB, oracle=False)
    assert drift.max_abs_diff > 0  # the pruned model is not the original: the comparison sees something
    prompt = np.array([[1, 5, 6, 7, 8]], dtype=np.int64)
    tokens, logits = _greedy(str(out), head_size, prompt, steps=12)
    expected, oracle_logits = _greedy(oracle, head_size, prompt, steps=12)
    assert tokens == expected
    scale = max(1.0, float(np.abs(np.stack(oracle_logits)).max()))
    np.testing.assert_allclose(np.stack(logits), np.stack(oracle_logits), atol=1e-4 * scale)
    # the cache loop is the model: the last step's logits equal one run over the whole sequence with no cache
    whole = np.concatenate([prompt, np.array([tokens[:-1]])], axis=1)
    session = make_session(str(out), "cpu", fuse=False)
    full = session.run(["logits"], decoder_feeds(session, head_size, whole))[0][0, -1]
    np.testing.assert_allclose(full, logits[-1], atol=1e-4 * scale)


SLOW = pytest.mark.slow


@pytest.mark.parametrize("kind,optimized", [
    ("llama", False), pytest.param("llama", True, marks=SLOW), ("qwen2", False), ("qwen2", True),
    pytest.param("phi3", False, marks=SLOW), pytest.param("phi3", True, marks=SLOW),  # packed qkv/gate_up Slices
])
def test_optimum_decoder_prunes_and_generates(optimum_model, tmp_path, kind, optimized):
    _check_pruned(optimum_model(kind, optimized), tmp_path, kind, optimized)


def test_optimum_ort_fusions_present(optimum_model):
    ops = {n.op_type for n in onnx.load(str(optimum_model("qwen2", True))).graph.node}
    assert {"SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization"} <= ops, ops
    plain = {n.op_type for n in onnx.load(str(optimum_model("qwen2", False))).graph.node}
    assert "If" not in plain and "SkipSimplifiedLayerNormalization" not in plain


def test_optimum_cli_with_cache_io(optimum_model, tmp_path):
    src = optimum_model("llama", False)
    out = tmp_path / "model.onnx"
    args = ["prune", str(src), str(out), "--ratio", "0.3", "--heads-ratio", "0.25", "--no-hidden"]
    done = CliRunner().invoke(main, [*args, "--allow-cache-io"])
    assert done.exit_code == 0, done.output
    assert "validation: PASSED (mask oracle" in done.output
    assert _cache_heads(onnx.load(str(out))) == {HEADS - 1}
    # no genai_config.json beside an optimum export: the cache is protected unless allowed (heads blocked, MLP
    # pruned), validated on made-up inputs with a non-empty cache (attention_mask sized past + sequence)
    kept = tmp_path / "kept.onnx"
    done = CliRunner().invoke(main, [*args[:2], str(kept), *args[3:]])
    assert done.exit_code == 0, done.output
    assert "validation: PASSED (mask oracle" in done.output and "random samples" in done.output, done.output
    assert "past_key_values" in done.output  # the blocked heads name the protected cache
    assert _cache_heads(onnx.load(str(kept))) == {HEADS}
