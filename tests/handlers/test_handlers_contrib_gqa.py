"""GroupQueryAttention with query heads as the units (analysis setting attention_units 'query_heads'): each query
head is a unit, the same count goes from every KV group (equal blocks), KV heads and the cache stay; packed and
unpacked QKV (head size 16: onnxruntime's CPU kernel wants a multiple of 16); the pruned model equals the mask
oracle and num_heads / kv_num_heads are rewritten from the widths."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import onnxprune as op
from onnxprune.cli import main
from onnxprune.errors import PruneError
from onnxprune.validation.oracle import compare
from tests.support.checked import checked_prune
from tests.support.handlers_util import analyse, attribute, group_of, make_model, table

MS = '<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>'
SIGNATURE = """(float[1,5,16] x, float[1,2,3,16] past_key, float[1,2,3,16] past_value, int32[1] seqlens_k,
            int32 total) => (float[1,5,8] y, float[1,2,8,16] present_key, float[1,2,8,16] present_value)"""
PACKED = MS + f"""
    agraph {SIGNATURE} <float[16,128] wq, float[8,8] cos, float[8,8] sin, float[64,8] wo> {{
      qkv = MatMul (x, wq)
      a, present_key, present_value = com.microsoft.GroupQueryAttention <num_heads=4, kv_num_heads=2, do_rotary=1>
          (qkv, , , past_key, past_value, seqlens_k, total, cos, sin)
      y = MatMul (a, wo)
    }}"""
UNPACKED = MS + f"""
    agraph {SIGNATURE} <float[16,64] wq, float[16,32] wk, float[16,32] wv, float[8,8] cos, float[8,8] sin,
                        float[64,8] wo> {{
      q = MatMul (x, wq)
      k = MatMul (x, wk)
      v = MatMul (x, wv)
      a, present_key, present_value = com.microsoft.GroupQueryAttention <num_heads=4, kv_num_heads=2, do_rotary=1>
          (q, k, v, past_key, past_value, seqlens_k, total, cos, sin)
      y = MatMul (a, wo)
    }}"""
QUERY_HEADS = op.AnalysisOptions(attention_units="query_heads")


def _feeds(seed: int = 0) -> list[dict]:
    """Valid GQA inputs: 3 cached positions, 5 new ones (total 8); onnxruntime wants batch 1 then."""
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 5, 16)).astype(np.float32),
             "past_key": rng.standard_normal((1, 2, 3, 16)).astype(np.float32),
             "past_value": rng.standard_normal((1, 2, 3, 16)).astype(np.float32),
             "seqlens_k": np.array([7], dtype=np.int32), "total": np.array(8, dtype=np.int32)}]


@pytest.mark.parametrize("text", [PACKED, UNPACKED], ids=["packed", "unpacked"])
def test_query_heads_within_kv_groups_prune_oracle_exact(text):
    dg = analyse(text, options=QUERY_HEADS)
    heads = group_of(dg, "wo", 0)
    assert heads.size == 4 and heads.prunable and heads.exact and {"heads", "query_heads"} <= heads.labels
    assert heads.blocks.tolist() == [0, 0, 1, 1]  # query heads 0, 1 read KV head 0; 2, 3 read KV head 1
    assert table(heads, "wq", 1)[2] == list(range(32, 48)) and table(heads, "wo", 0)[3] == list(range(48, 64))
    kv = [g for g in dg.channel_groups() if g is not heads and any(a.tensor in ("wq", "wk", "wv") for a in g.members)]
    assert kv and all(not g.prunable for g in kv)  # KV channels stay (packed: the kept indices of wq)
    assert any("query_heads" in r for g in kv for r in g.blocked_reasons)
    for units in ([0, 3], [1, 2]):  # one query head from each KV group
        result = checked_prune(dg, {heads.id: units})
        assert (attribute(result.model, "GroupQueryAttention", "num_heads"),
                attribute(result.model, "GroupQueryAttention", "kv_num_heads")) == (2, 2)
        report = compare(op.masked_model(dg, {heads.id: units}), result.model, _feeds())
        assert report.passed, report.format()
    with pytest.raises(PruneError, match="same count from every block"):
        op.apply_plan(dg, {heads.id: [0, 1]})  # both query heads of KV group 0: its KV head would read none


def test_kv_groups_stay_the_default_and_rewrite_from_widths():
    dg = analyse(UNPACKED, options=op.AnalysisOptions(allowed_io_axes={
        op.ChannelAxis(n, 1) for n in ("past_key", "past_value", "present_key", "present_value")}))
    groups = group_of(dg, "wq", 1)
    assert groups.size == 2 and groups.blocks is None and "query_heads" not in groups.labels
    result = checked_prune(dg, {groups.id: [0]})
    assert (attribute(result.model, "GroupQueryAttention", "num_heads"),
            attribute(result.model, "GroupQueryAttention", "kv_num_heads")) == (2, 1)


def test_attention_units_must_be_known():
    with pytest.raises(ValueError, match="attention_units"):
        op.AnalysisOptions(attention_units="heads")


def test_groups_command_lists_query_heads_with_their_blocks(tmp_path):
    """`onnxprune groups --attention-units query-heads` shows the query-head group and its equal blocks; the default
    shows whole KV groups."""
    path = tmp_path / "gqa.onnx"
    onnx.save(make_model(UNPACKED), path)
    default = CliRunner().invoke(main, ["groups", str(path)])
    query = CliRunner().invoke(main, ["groups", str(path), "--attention-units", "query-heads"])
    details = CliRunner().invoke(main, ["groups", str(path), "--details", "--attention-units", "query-heads"])
    assert default.exit_code == query.exit_code == details.exit_code == 0, default.output + query.output
    assert "2 heads  12 members  wq[axis 1]  blocked: graph input 'past_key' axis 1 is protected" in default.output
    assert "equal blocks" not in default.output
    assert "4 heads   4 members  wq[axis 1]  prunable  [heads, query_heads]  (2 equal blocks)" in query.output
    assert "KV heads stay while query heads are the units" in query.output
    assert "4 heads, prunable, 2 equal blocks (same count removed from each)" in details.output
