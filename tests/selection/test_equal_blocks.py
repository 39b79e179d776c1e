"""Selection honours equal blocks (``ctx.equal_blocks``: the query heads of each KV group of a GroupQueryAttention
analysed with attention_units 'query_heads'): the same count from every block, the lowest-scored units of each, at
least one kept per block; by ratio, by heads_ratio / query_heads_ratio and under global ranking."""

from __future__ import annotations

import numpy as np
import pytest

import onnxprune as op
from onnxprune.selection.select import SelectionOptions, lowest_per_block, select
from tests.support.checked import checked_prune
from tests.support.handlers_util import analyse, attribute, group_of

GQA6 = """<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
    agraph (float[1,5,16] x, float[1,2,3,16] past_key, float[1,2,3,16] past_value, int32[1] seqlens_k, int32 total)
           => (float[1,5,8] y, float[1,2,8,16] present_key, float[1,2,8,16] present_value)
           <float[16,96] wq, float[16,32] wk, float[16,32] wv, float[8,8] cos, float[8,8] sin, float[96,8] wo> {
      q = MatMul (x, wq)
      k = MatMul (x, wk)
      v = MatMul (x, wv)
      a, present_key, present_value = com.microsoft.GroupQueryAttention <num_heads=6, kv_num_heads=2, do_rotary=1>
          (q, k, v, past_key, past_value, seqlens_k, total, cos, sin)
      y = MatMul (a, wo)
    }"""
# query heads 0, 1, 2 read KV head 0; 3, 4, 5 read KV head 1
SCORES = np.array([3.0, 1.0, 2.0, 0.5, 9.0, 0.1])


@pytest.fixture(scope="module")
def heads_dg():
    dg = analyse(GQA6, options=op.AnalysisOptions(attention_units="query_heads"))
    group = group_of(dg, "wo", 0)
    assert group.blocks.tolist() == [0, 0, 0, 1, 1, 1] and group.size == 6
    return dg, group


def test_lowest_per_block():
    assert lowest_per_block(SCORES, np.array([0, 0, 0, 1, 1, 1]), 1) == [1, 5]
    assert lowest_per_block(SCORES, np.array([0, 0, 0, 1, 1, 1]), 2) == [1, 2, 3, 5]
    assert lowest_per_block(SCORES, np.array([0, 1, 0, 1, 0, 1]), 1) == [2, 5]


@pytest.mark.parametrize("options,expected", [
    (SelectionOptions(ratio=0.0, query_heads_ratio=0.5), [1, 2, 3, 5]),  # per block: 3 - int(1.5) = 2
    (SelectionOptions(ratio=0.0, query_heads_ratio=0.3), [1, 5]),  # per block: 3 - int(2.1) = 1
    (SelectionOptions(ratio=0.0, query_heads_ratio=0.9), [1, 2, 3, 5]),  # one kept per block
    (SelectionOptions(ratio=0.0, heads_ratio=0.3), [1, 5]),  # a query-head group is a head group too
    (SelectionOptions(ratio=0.3), [1, 5]),  # plain ratio: still per block
    (SelectionOptions(ratio=0.5, max_ratio=0.34), [1, 5]),  # max_ratio caps each block
    (SelectionOptions(ratio=0.0, query_heads_ratio=0.0), []),
])
def test_same_count_from_every_block(heads_dg, options, expected):
    dg, group = heads_dg
    plan = select(dg, {group.id: SCORES}, options)
    assert plan.get(group.id, []) == expected


def test_global_ranking_spreads_the_groups_share_over_its_blocks(heads_dg):
    dg, group = heads_dg
    # the two lowest scores overall are both in block 1 (0.5, 0.1): the share is 6 - int(4.2) = 2 units, 1 per block
    plan = select(dg, {group.id: np.array([3.0, 1.0, 2.0, 0.5, 9.0, 0.1])}, SelectionOptions(ratio=0.3,
                                                                                          global_ranking=True))
    assert plan[group.id] == [1, 5]
    counts = np.bincount(group.blocks[plan[group.id]], minlength=2)
    assert counts[0] == counts[1]


def test_selected_plan_applies_with_right_head_counts(heads_dg):
    dg, group = heads_dg
    plan = select(dg, {group.id: SCORES}, SelectionOptions(ratio=0.0, query_heads_ratio=0.5))
    model = checked_prune(dg, plan).model
    assert (attribute(model, "GroupQueryAttention", "num_heads"),
            attribute(model, "GroupQueryAttention", "kv_num_heads")) == (2, 2)
    assert group.check_blocks(np.array([0, 1, 3])) is not None and group.check_blocks(np.array([0, 1, 2, 3, 4])) \
        is not None and group.check_blocks(np.array([2, 4])) is None
