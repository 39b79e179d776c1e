"""SplitToSequence read back by SequenceAt (torch dynamo's chunk/split): each read piece is an offset slice."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.checked import checked_prune
from tests.support.handlers_util import analyse, check_all_prunable, group_of, header, initializer, table


def _model(split_decl: str, piece1: int, **consts):
    # ONNX infers no element shapes for unequal splits; exporters write them as value_info, as here
    return analyse(header(13) + f"""
    agraph (float[N,3,8,8] x) => (float[N,2,8,8] y) <float[6,3,1,1] w, {split_decl}, int64 zero, int64 last,
            float[N,2,8,8] s0, float[N,{piece1},8,8] s1, float[2,2,1,1] w0, float[2,{piece1},1,1] w1> {{
      a = Conv (x, w)
      seq = SplitToSequence <axis=1> (a, sp)
      s0 = SequenceAt (seq, zero)
      s1 = SequenceAt (seq, last)
      p = Conv (s0, w0)
      q = Conv (s1, w1)
      y = Add (p, q)
    }}""", zero=np.array(0), last=np.array(-1), **consts)


def test_split_sizes_couple_each_read_piece_by_its_offset():
    dg = _model("int64[2] sp", 4, sp=np.array([2, 4]))
    first, second = group_of(dg, "s0", 1), group_of(dg, "s1", 1)
    assert table(first, "a", 1) == [[0], [1]]
    assert table(second, "a", 1) == [[2], [3], [4], [5]] and table(second, "w1", 1) == [[0], [1], [2], [3]]
    check_all_prunable(dg, expect=2)
    assert initializer(checked_prune(dg, {second.id: [0, 2]}).model, "sp").tolist() == [2, 2]


def test_equal_chunks_with_an_unread_middle_piece():
    dg = _model("int64 sp", 2, sp=np.array(2))
    last = group_of(dg, "s1", 1)
    assert table(last, "a", 1) == [[4], [5]]
    middle = [g for g in dg.group_of("a", 1) if table(g, "a", 1) == [[2], [3]]]
    assert len(middle) == 1 and middle[0].prunable  # unread channels still change the piece sizes
    check_all_prunable(dg, expect=3)
    assert initializer(checked_prune(dg, {middle[0].id: [1]}).model, "sp").tolist() == [2, 1, 2]


@pytest.mark.parametrize("reader,width", [("c = ConcatFromSequence <axis=1> (seq)", 6),
                                          ("c = SequenceAt (seq, pos)", 2)])
def test_sequences_it_cannot_follow_block(reader, width):
    dg = analyse(header(13) + f"""
    agraph (float[N,3,8,8] x, int64 pos) => (float[N,2,8,8] y) <float[6,3,1,1] w, int64 sp,
                                                                float[N,{width},8,8] c, float[2,{width},1,1] w1> {{
      a = Conv (x, w)
      seq = SplitToSequence <axis=1> (a, sp)
      {reader}
      y = Conv (c, w1)
    }}""", sp=np.array(2))
    g = group_of(dg, "w", 0)
    assert not g.prunable
    assert any("SplitToSequence node" in r and "not static" in r for r in g.blocked_reasons), g.blocked_reasons
    assert not dg.prunable_groups()
