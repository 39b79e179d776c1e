"""com.microsoft MultiHeadAttention in every layout of its spec, and Attention with a value width of its own: whole
heads go, head sizes stay, ``num_heads`` / ``qkv_hidden_sizes`` and Reshape targets are rewritten, and the pruned
model equals the mask oracle (its kept heads, and the kept slices of pruned cache inputs/outputs) in onnxruntime.

onnxruntime's CPU kernel refuses the packed layouts (query [B, S, N, 3, H]: "Packed QKV ... not implemented for
CPU"; key [B, L, N, 2, H]: "Packed KV not implemented for CPU"); they run on CUDA only. Both the pruned model and
the oracle are therefore run after ``unpack_attention`` (onnxprune.runtime.cpu_layouts, which validation uses on
CPU) splits the packed input into 3-D query/key/value the way the spec defines the packing (Gather on the packed
axis, then [B, S, N*H]), which the CPU kernel runs: the pruned nodes and Reshape targets are the ones written,
only the split is added."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
from onnx import helper

import onnxprune as op
from onnxprune.axes import ChannelAxis
from onnxprune.runtime import make_session
from onnxprune.runtime.cpu_layouts import unpack_attention
from tests.support.checked import checked_prune
from tests.support.handlers_util import analyse, attribute, group_of, initializer, table

MS = '<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>'


def _cut(removed: dict, name: str, values: np.ndarray) -> np.ndarray:
    """``values`` of tensor ``name`` without the indices the plan removes from its axes."""
    for axis in range(values.ndim):
        idx = removed.get(ChannelAxis(name, axis))
        if idx is not None:
            values = np.delete(values, idx, axis=axis)
    return values


def assert_oracle(dg: op.DependencyGraph, plan: dict, packed: bool = False, inputs: dict | None = None
                  ) -> onnx.ModelProto:
    """Prune (checker full_check, onnxruntime session), then run the pruned model and the mask oracle on the same
    inputs (random, or ``inputs``; the pruned model gets them without the removed indices of allowed inputs) and
    require equal outputs once the oracle's outputs lose the removed indices. Returns the pruned model."""
    pruned = checked_prune(dg, plan).model
    masked = op.masked_model(dg, plan).proto
    for info in list(masked.graph.output):  # onnxruntime cannot infer the type of MHA's qk output once it is masked
        if info.name.endswith("__masked"):
            masked.graph.value_info.append(copy.deepcopy(info))
            masked.graph.value_info[-1].name = info.name[:-len("__masked")]
    if packed:
        masked, pruned_run = unpack_attention(masked), unpack_attention(pruned)
    else:
        pruned_run = pruned
    removed = dg.resolve(plan)
    rng = np.random.default_rng(1)
    feeds = {}
    for info in masked.graph.input:
        shape = [d.dim_value for d in info.type.tensor_type.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
        feeds[info.name] = np.ones(shape, dtype) if dtype == np.int32 else rng.standard_normal(shape).astype(dtype)
    feeds.update(inputs or {})
    refs = make_session(masked, "cpu", fuse=False).run(None, feeds)
    gots = make_session(pruned_run, "cpu", fuse=False).run(None, {k: _cut(removed, k, v) for k, v in feeds.items()})
    for info, ref, got in zip(pruned.graph.output, refs, gots):  # the oracle's outputs are renamed, same order
        ref = _cut(removed, info.name, ref)
        assert ref.shape == got.shape, (info.name, ref.shape, got.shape)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5, err_msg=info.name)
    return pruned


def _reshape_target(model: onnx.ModelProto, output: str) -> list[int]:
    """The constant target of the Reshape that writes ``output``."""
    node = next(n for n in model.graph.node if n.op_type == "Reshape" and n.output[0] == output)
    return initializer(model, node.input[1]).tolist()


PACKED_QKV = MS + """
    agraph (float[2,5,16] x) => (float[2,5,8] y) <float[16,48] wqkv, float[48] b, float[16,8] wo> {
      qkv = MatMul (x, wqkv)
      shape = Constant <value = int64[5] {0, 0, 4, 3, 4}> ()
      p = Reshape (qkv, shape)
      a = com.microsoft.MultiHeadAttention <num_heads=4> (p, , , b)
      y = MatMul (a, wo)
    }"""


def test_packed_qkv_prunes_whole_heads():
    dg = analyse(PACKED_QKV)
    heads = group_of(dg, "wqkv", 1)
    assert heads.size == 4 and heads.prunable and heads.exact and "heads" in heads.labels
    assert table(heads, "wqkv", 1)[1] == list(range(12, 24))  # [B, S, N, 3, H]: head 1's Q, K, V are interleaved
    assert table(heads, "b", 0)[1] == [*range(4, 8), *range(20, 24), *range(36, 40)]  # bias: Q, K, V blocks
    assert table(heads, "p", 2) == [[0], [1], [2], [3]]
    assert len(dg.prunable_groups()) == 1
    model = assert_oracle(dg, {heads.id: [1, 2]}, packed=True)
    assert attribute(model, "MultiHeadAttention", "num_heads") == 2
    assert _reshape_target(model, "p") == [0, 0, 2, 3, 4]
    assert initializer(model, "wqkv").shape == (16, 24)


PACKED_KV = MS + """
    agraph (float[2,5,16] x, float[2,7,16] m) => (float[2,5,8] y) <float[16,16] wq, float[16,32] wkv, float[16,8] wo> {
      q = MatMul (x, wq)
      kv = MatMul (m, wkv)
      shape = Constant <value = int64[5] {0, 0, 4, 2, 4}> ()
      p = Reshape (kv, shape)
      a = com.microsoft.MultiHeadAttention <num_heads=4> (q, p)
      y = MatMul (a, wo)
    }"""


def test_packed_kv_prunes_whole_heads():
    dg = analyse(PACKED_KV)
    heads = group_of(dg, "wq", 1)
    assert heads.size == 4 and heads.exact and group_of(dg, "wkv", 1) is heads
    assert table(heads, "wkv", 1)[2] == list(range(16, 24)) and table(heads, "wq", 1)[2] == list(range(8, 12))
    model = assert_oracle(dg, {heads.id: [0, 3]}, packed=True)
    assert attribute(model, "MultiHeadAttention", "num_heads") == 2
    assert _reshape_target(model, "p") == [0, 0, 2, 2, 4]


BNSH_KV = MS + """
    agraph (float[2,5,16] x, float[2,7,16] m) => (float[2,5,8] y)
           <float[16,16] wq, float[16,16] wk, float[16,16] wv, float[48] b, float[1,4,5,7] rel, float[16,8] wo> {
      q = MatMul (x, wq)
      k = MatMul (m, wk)
      v = MatMul (m, wv)
      kshape = Constant <value = int64[4] {0, 0, 4, 4}> ()
      k4 = Reshape (k, kshape)
      v4 = Reshape (v, kshape)
      kt = Transpose <perm = [0, 2, 1, 3]> (k4)
      vt = Transpose <perm = [0, 2, 1, 3]> (v4)
      a = com.microsoft.MultiHeadAttention <num_heads=4> (q, kt, vt, b, , rel)
      y = MatMul (a, wo)
    }"""


def test_bnsh_key_value_with_head_axis_attention_bias():
    dg = analyse(BNSH_KV)
    heads = group_of(dg, "wq", 1)
    assert heads.size == 4 and heads.exact
    assert {("wk", 1), ("wv", 1), ("kt", 1), ("vt", 1), ("rel", 1), ("wo", 0)} <= {
        (a.tensor, a.axis) for a in heads.members}
    assert table(heads, "wv", 1)[1] == list(range(4, 8))
    assert table(heads, "b", 0)[1] == [*range(4, 8), *range(20, 24), *range(36, 40)]
    assert len(dg.prunable_groups()) == 1
    model = assert_oracle(dg, {heads.id: [1]})
    assert attribute(model, "MultiHeadAttention", "num_heads") == 3
    assert _reshape_target(model, "v4") == [0, 0, 3, 4] and initializer(model, "rel").shape == (1, 3, 5, 7)


CROSS_CACHE = MS + """
    agraph (float[2,5,16] x, float[2,4,7,4] cross_k, float[2,4,7,4] cross_v)
           => (float[2,5,8] y, float[2,4,7,4] present_k, float[2,4,7,4] present_v) <float[16,16] wq, float[16,8] wo> {
      q = MatMul (x, wq)
      a, present_k, present_v = com.microsoft.MultiHeadAttention <num_heads=4> (q, cross_k, cross_v)
      y = MatMul (a, wo)
    }"""


def test_bnsh_cross_attention_cache_as_graph_io():
    blocked = group_of(analyse(CROSS_CACHE), "wq", 1)
    assert not blocked.prunable and any("cross_k" in r for r in blocked.blocked_reasons)
    cache = {ChannelAxis(n, 1) for n in ("cross_k", "cross_v", "present_k", "present_v")}
    dg = analyse(CROSS_CACHE, options=op.AnalysisOptions(allowed_io_axes=cache))
    heads = group_of(dg, "wq", 1)
    assert heads.prunable and heads.exact and table(heads, "cross_k", 1) == [[0], [1], [2], [3]]
    model = assert_oracle(dg, {heads.id: [0, 2]})
    assert attribute(model, "MultiHeadAttention", "num_heads") == 2
    assert [d.dim_value for d in model.graph.input[1].type.tensor_type.shape.dim] == [2, 2, 7, 4]


SELF_PAST = MS + """
    agraph (float[2,5,16] x, float[2,4,3,4] past_key, float[2,4,3,4] past_value, float[2,4,5,8] rel, int32[2,8] mask,
            float[2,1,5,8] broadcast)
           => (float[2,5,8] y, float[2,4,8,4] present_key, float[2,4,8,4] present_value, float[2,4,5,8] qk)
           <float[16,16] wq, float[16,16] wk, float[16,16] wv, float[16,8] wo> {
      q = MatMul (x, wq)
      k = MatMul (x, wk)
      v = MatMul (x, wv)
      r = Add (rel, broadcast)
      a, present_key, present_value, qk = com.microsoft.MultiHeadAttention <num_heads=4, unidirectional=1>
          (q, k, v, , mask, r, past_key, past_value)
      y = MatMul (a, wo)
    }"""


def test_3d_with_past_mask_attention_bias_and_qk():
    io = {ChannelAxis(n, 1) for n in ("past_key", "past_value", "present_key", "present_value", "rel", "qk")}
    dg = analyse(SELF_PAST, options=op.AnalysisOptions(allowed_io_axes=io))
    heads = group_of(dg, "wq", 1)
    assert heads.prunable and heads.exact and heads.size == 4
    assert table(heads, "wv", 1)[3] == list(range(12, 16)) and table(heads, "rel", 1)[3] == [3]
    assert table(heads, "qk", 1)[3] == [3] and dg.group_of("broadcast", 1) == []  # a broadcast head axis stays
    model = assert_oracle(dg, {heads.id: [3]})
    assert attribute(model, "MultiHeadAttention", "num_heads") == 3


WIDE_VALUE = MS + """
    agraph (float[2,5,16] x, float[2,7,16] m) => (float[2,5,8] y)
           <float[16,16] wq, float[16,16] wk, float[16,24] wv, float[56] b, float[24,8] wo> {
      q = MatMul (x, wq)
      k = MatMul (m, wk)
      v = MatMul (m, wv)
      a = com.microsoft.MultiHeadAttention <num_heads=4> (q, k, v, b)
      y = MatMul (a, wo)
    }"""


def test_3d_with_a_wider_value_and_bias():
    dg = analyse(WIDE_VALUE)
    heads = group_of(dg, "wq", 1)
    assert heads.exact and table(heads, "wv", 1)[1] == list(range(6, 12))
    assert table(heads, "b", 0)[1] == [*range(4, 8), *range(20, 24), *range(38, 44)]
    model = assert_oracle(dg, {heads.id: [1, 2]})
    assert attribute(model, "MultiHeadAttention", "num_heads") == 2


def test_unsupported_layouts_block_with_the_layout_named():
    bs3nh = group_of(analyse(MS + """
    agraph (float[2,5,16] x) => (float[2,5,8] y) <float[16,48] wqkv, float[48,8] wo> {
      qkv = MatMul (x, wqkv)
      a = com.microsoft.MultiHeadAttention <num_heads=4> (qkv)
      y = MatMul (a, wo)
    }"""), "wqkv", 1)
    assert not bs3nh.prunable and any("BS3NH" in r for r in bs3nh.blocked_reasons), bs3nh.blocked_reasons
    kv_bias = group_of(analyse(PACKED_KV.replace("(q, p)", "(q, p, , bias)").replace(
        "float[16,8] wo>", "float[16,8] wo, float[48] bias>")), "wq", 1)
    assert not kv_bias.prunable and any("packed KV and a bias" in r for r in kv_bias.blocked_reasons)


ATTENTION = MS + """
    agraph (float[2,5,16] x) => (float[2,5,8] y) <float[16,56] w, float[56] b, float[1,4,5,5] rel, float[24,8] wo> {
      a = com.microsoft.Attention <num_heads=4, qkv_hidden_sizes = [16, 16, 24]> (x, w, b, , , rel)
      y = MatMul (a, wo)
    }"""


def test_attention_with_a_wider_value():
    dg = analyse(ATTENTION)
    heads = group_of(dg, "w", 1)
    assert heads.size == 4 and heads.exact
    # head 1: Q columns 4..7, K 20..23, V (head size 6) 32 + 6..11
    assert table(heads, "w", 1)[1] == [*range(4, 8), *range(20, 24), *range(38, 44)]
    assert table(heads, "wo", 0)[1] == list(range(6, 12)) and table(heads, "rel", 1)[1] == [1]
    model = assert_oracle(dg, {heads.id: [0, 3]})
    assert attribute(model, "Attention", "num_heads") == 2
    assert attribute(model, "Attention", "qkv_hidden_sizes") == [8, 8, 12]
    weights = next(n for n in model.graph.node if n.op_type == "Attention").input[1]
    assert next(list(t.dims) for t in model.graph.initializer if t.name == weights) == [16, 28]


def test_attention_with_unequal_query_and_key_blocks():
    text = ATTENTION.replace("[16, 16, 24]", "[16, 8, 32]").replace("float[24,8] wo", "float[32,8] wo")
    group = group_of(analyse(text), "wo", 0)
    assert not group.prunable and any("qkv_hidden_sizes [16, 8, 32]" in r for r in group.blocked_reasons)


def test_packed_layouts_from_onnxruntimes_unet_fusion(tmp_path):
    """onnxruntime's transformer optimizer (model_type 'unet') on a Stable-Diffusion-style block writes packed QKV
    self-attention and packed KV cross-attention; every head group of both prunes, oracle-exact."""
    pytest.importorskip("torch")
    from onnxprune.models import unet_transformer
    from onnxruntime.transformers.optimizer import optimize_model

    unet_transformer.export(str(tmp_path / "block.onnx"))
    optimize_model(str(tmp_path / "block.onnx"), model_type="unet", num_heads=unet_transformer.HEADS,
                   hidden_size=unet_transformer.HIDDEN, opt_level=0).save_model_to_file(str(tmp_path / "opt.onnx"))
    dg = op.analyse_model(str(tmp_path / "opt.onnx"))
    mha = [n for n in dg.graph.nodes if n.op == "MultiHeadAttention"]
    layouts = sorted([len(t.shape) for t in n.inputs] for n in mha)
    assert layouts == [[3, 5], [5]], layouts  # query with packed KV [B, L, N, 2, H]; packed QKV [B, S, N, 3, H]
    heads = [g for g in dg.prunable_groups() if "heads" in g.labels]
    assert len(heads) == 2 and all(g.size == unet_transformer.HEADS and g.exact for g in heads)
    x, context = (t.numpy() for t in unet_transformer.inputs(1))
    model = assert_oracle(dg, {heads[0].id: [0, 2], heads[1].id: [3]}, packed=True,
                          inputs={"x": x, "context": context})
    assert sorted(attribute(model, "MultiHeadAttention", "num_heads", uses=n.inputs[0].name) for n in mha) == [2, 3]


def test_bnsh_cache_from_onnxruntimes_bart_fusion(tmp_path):
    """onnxruntime's optimizer (model_type 'bart', use_multi_head_attention) on a decoder cross-attention over cached
    encoder K/V writes MultiHeadAttention with the 4-D cache inputs as key/value; with the cache's head axis allowed,
    heads prune oracle-exact and the pruned model takes the cache without the removed heads."""
    pytest.importorskip("torch")
    from onnxprune.models import decoder_cross_attention as block
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    block.export(str(tmp_path / "block.onnx"))
    options = FusionOptions("bart")
    options.use_multi_head_attention = True
    optimize_model(str(tmp_path / "block.onnx"), model_type="bart", num_heads=block.HEADS, hidden_size=block.HIDDEN,
                   opt_level=0, optimization_options=options).save_model_to_file(str(tmp_path / "opt.onnx"))
    cache = {ChannelAxis("past_k", 1), ChannelAxis("past_v", 1)}
    dg = op.analyse_model(str(tmp_path / "opt.onnx"), options=op.AnalysisOptions(allowed_io_axes=cache))
    (mha,) = [n for n in dg.graph.nodes if n.op == "MultiHeadAttention"]
    assert [t.name for t in mha.inputs[1:3]] == ["past_k", "past_v"] and len(mha.inputs[1].shape) == 4
    (heads,) = [g for g in dg.prunable_groups() if "heads" in g.labels]
    assert heads.size == block.HEADS and heads.exact and table(heads, "past_v", 1) == [[0], [1], [2], [3]]
    x, past_k, past_v = (t.numpy() for t in block.inputs(1))
    model = assert_oracle(dg, {heads.id: [1, 2]}, inputs={"x": x, "past_k": past_k, "past_v": past_v})
    assert attribute(model, "MultiHeadAttention", "num_heads") == 2
    assert [d.dim_value for d in model.graph.input[1].type.tensor_type.shape.dim] == [2, 2, 5, 4]


def test_prune_validates_packed_attention_on_cpu(tmp_path):
    """``prune`` on onnxruntime's unet fusion (packed QKV and packed KV) validates on CPU against the mask oracle
    (both run with the packed inputs split, and the report says so), and the written model keeps them packed."""
    pytest.importorskip("torch")
    from onnxprune.models import unet_transformer
    from onnxruntime.transformers.optimizer import optimize_model

    unet_transformer.export(str(tmp_path / "block.onnx"))
    optimize_model(str(tmp_path / "block.onnx"), model_type="unet", num_heads=unet_transformer.HEADS,
                   hidden_size=unet_transformer.HIDDEN, opt_level=0).save_model_to_file(str(tmp_path / "opt.onnx"))
    pruned = op.prune(str(tmp_path / "opt.onnx"), heads_ratio=0.5, ratio=0.0, provider="cpu")
    check = pruned.report["validation"]
    assert check["passed"] and check["oracle"] and "split to 3-D" in check["note"], check
    assert check["max_abs_diff"] <= check["tolerance"]
    mha = [n for n in pruned.model.graph.node if n.op_type == "MultiHeadAttention"]
    assert sorted(attribute(pruned.model, "MultiHeadAttention", "num_heads", uses=n.input[0]) for n in mha) == [
        unet_transformer.HEADS // 2] * 2
    assert not any(n.op_type == "Gather" and n.input[0] in {m.input[0] for m in mha} for n in pruned.model.graph.node)
