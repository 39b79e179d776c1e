"""onnxruntime contrib ops (com.microsoft, and SimplifiedLayerNormalization in the default domain): fused attention
prunes whole heads (GroupQueryAttention whole KV groups) and rewrites num_heads / kv_num_heads; the fused norms
are not mask-exact over the hidden width; MatMulNBits prunes output rows and whole input blocks.

Registered and covered here: com.microsoft::Attention, com.microsoft::MultiHeadAttention,
com.microsoft::GroupQueryAttention, com.microsoft::RotaryEmbedding (and ONNX's RotaryEmbedding, same handler),
com.microsoft::SkipLayerNormalization, com.microsoft::SkipSimplifiedLayerNormalization,
SimplifiedLayerNormalization, com.microsoft::FastGelu, com.microsoft::BiasGelu, com.microsoft::QuickGelu,
com.microsoft::MatMulNBits."""

from __future__ import annotations

import numpy as np
from onnxprune.op_handlers.matmul_nbits import pack_bits, unpack_bits

import onnxprune as op
from onnxprune.axes import ChannelAxis
from tests.support.handlers_util import analyse, attribute, check_all_prunable, group_of, table

MS = '<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>'
RNG = np.random.default_rng(0)


def test_attention_packed_qkv_prunes_whole_heads():
    dg = analyse(MS + """
    agraph (float[2,5,16] x) => (float[2,5,8] y) <float[16,48] w, float[48] b, float[16,8] wo> {
      a = com.microsoft.Attention <num_heads=2> (x, w, b)
      y = MatMul (a, wo)
    }""")
    heads = group_of(dg, "w", 1)
    assert heads.size == 2 and "heads" in heads.labels and heads.exact
    assert table(heads, "w", 1)[1] == [*range(8, 16), *range(24, 32), *range(40, 48)]
    check_all_prunable(dg, expect=1)


def test_multi_head_attention_prunes_whole_heads():
    dg = analyse(MS + """
    agraph (float[2,5,16] x) => (float[2,5,8] y) <float[16,16] wq, float[16,16] wk, float[16,16] wv, float[16,8] wo> {
      q = MatMul (x, wq)
      k = MatMul (x, wk)
      v = MatMul (x, wv)
      a = com.microsoft.MultiHeadAttention <num_heads=4> (q, k, v)
      y = MatMul (a, wo)
    }""")
    heads = group_of(dg, "wq", 1)
    assert heads.size == 4 and {("wk", 1), ("wv", 1), ("wo", 0)} <= {(a.tensor, a.axis) for a in heads.members}
    check_all_prunable(dg, expect=1)


GQA = MS + """
    agraph (float[2,5,16] x, float[2,2,3,4] past_key, float[2,2,3,4] past_value, int32[2] seqlens_k,
            int32 total) => (float[2,5,8] y, float[2,2,8,4] present_key, float[2,2,8,4] present_value)
           <float[16,32] wqkv, float[8,2] cos, float[8,2] sin, float[16,8] wo> {
      qkv = MatMul (x, wqkv)
      a, present_key, present_value = com.microsoft.GroupQueryAttention <num_heads=4, kv_num_heads=2, do_rotary=1>
          (qkv, , , past_key, past_value, seqlens_k, total, cos, sin)
      y = MatMul (a, wo)
    }"""


def test_group_query_attention_prunes_whole_kv_groups_with_the_cache_allowed():
    blocked = group_of(analyse(GQA), "wqkv", 1)
    assert not blocked.prunable and any("past_key" in r for r in blocked.blocked_reasons)
    cache = {ChannelAxis(n, 1) for n in ("past_key", "past_value", "present_key", "present_value")}
    dg = analyse(GQA, options=op.AnalysisOptions(allowed_io_axes=cache))
    groups = group_of(dg, "wqkv", 1)
    assert groups.size == 2 and groups.prunable and groups.exact
    # KV group 1: query heads 2 and 3 (channels 8..15), key head 1 (20..23), value head 1 (28..31)
    assert table(groups, "wqkv", 1)[1] == [*range(8, 16), *range(20, 24), *range(28, 32)]
    assert table(groups, "past_key", 1) == [[0], [1]]
    model = op.apply_plan(dg, {groups.id: [1]}).model
    assert (attribute(model, "GroupQueryAttention", "num_heads"),
            attribute(model, "GroupQueryAttention", "kv_num_heads")) == (2, 1)


def test_rotary_embedding_keeps_head_size():
    dg = analyse(MS + """
    agraph (float[2,5,16] x, int64[2,5] pos) => (float[2,5,8] y) <float[16,16] wq, float[8,2] cos, float[8,2] sin,
                                                                   float[16,8] wo> {
      q = MatMul (x, wq)
      r = com.microsoft.RotaryEmbedding <num_heads=4> (q, pos, cos, sin)
      y = MatMul (r, wo)
    }""")
    heads = group_of(dg, "wq", 1)
    assert heads.size == 4 and table(heads, "wq", 1)[2] == list(range(8, 12))
    model = op.apply_plan(dg, {heads.id: [0, 3]}).model
    assert attribute(model, "RotaryEmbedding", "num_heads") == 2


def test_fused_norms_and_gelus():
    dg = analyse(MS + """
    agraph (float[2,5,16] x) => (float[2,5,8] y)
           <float[16,16] w1, float[16,16] w2, float[16] g1, float[16] g2, float[16] g3, float[16] be3, float[16] bi3,
            float[16,32] w3, float[32] fb, float[32] gb, float[32,8] w4> {
      a = MatMul (x, w1)
      b = MatMul (x, w2)
      n1, m1, i1, s = com.microsoft.SkipSimplifiedLayerNormalization <epsilon=1e-5> (a, b, g1)
      n2 = SimplifiedLayerNormalization <axis=-1> (s, g2)
      n3 = com.microsoft.SkipLayerNormalization <epsilon=1e-5> (n1, n2, g3, be3, bi3)
      h = MatMul (n3, w3)
      f = com.microsoft.FastGelu (h, fb)
      g = com.microsoft.BiasGelu (f, gb)
      q = com.microsoft.QuickGelu (g)
      y = MatMul (q, w4)
    }""")
    hidden, mlp = group_of(dg, "w1", 1), group_of(dg, "w3", 1)
    assert not hidden.exact and "normalized" in hidden.labels and {("g2", 0), ("bi3", 0)} <= {
        (a.tensor, a.axis) for a in hidden.members}
    assert mlp.exact and mlp.size == 32
    check_all_prunable(dg, expect=2)


def _nbits(n: int, k: int, block: int) -> dict:
    blocks = k // block
    zero_points = RNG.integers(6, 10, size=(n, blocks)).astype(np.uint8)
    return {"b": RNG.integers(0, 256, size=(n, blocks, block // 2)).astype(np.uint8),
            "s": RNG.uniform(0.01, 0.05, n * blocks).astype(np.float32), "z": pack_bits(zero_points, 4)}


def test_matmul_nbits_prunes_output_rows_and_whole_input_blocks():
    first, second = _nbits(32, 64, 32), _nbits(8, 32, 16)
    consts = {"b1": first["b"], "s1": first["s"], "z1": first["z"], "b2": second["b"], "s2": second["s"],
              "z2": second["z"]}
    dg = analyse(MS + """
    agraph (float[2,64] x) => (float[2,8] y) <uint8[32,2,16] b1, float[64] s1, uint8[32] z1, uint8[8,2,8] b2,
                                              float[16] s2, uint8[8] z2> {
      h = com.microsoft.MatMulNBits <K=64, N=32, bits=4, block_size=32> (x, b1, s1, z1)
      r = Relu (h)
      y = com.microsoft.MatMulNBits <K=32, N=8, bits=4, block_size=16> (r, b2, s2, z2)
    }""", **consts)
    blocks = group_of(dg, "b1", 0)
    assert blocks.size == 2 and table(blocks, "b2", 1) == [[0], [1]] and table(blocks, "h", 1)[1] == list(range(16, 32))
    check_all_prunable(dg, expect=1)
    model = op.apply_plan(dg, {blocks.id: [0]}).model
    assert (attribute(model, "MatMulNBits", "N", uses="x"), attribute(model, "MatMulNBits", "K", uses="r")) == (16, 16)


def test_zero_point_packing_round_trips():
    values = RNG.integers(0, 16, size=(5, 3)).astype(np.uint8)
    packed = pack_bits(values, 4)
    assert packed.shape == (10,) and np.array_equal(unpack_bits(packed, 5, 3, 4), values)
