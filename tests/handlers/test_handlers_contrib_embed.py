"""com.microsoft::EmbedLayerNormalization (onnxruntime's fused BERT embeddings): the word, position and segment
tables' columns, gamma, beta and the outputs' hidden axis are one group, not mask-exact (LayerNorm over it); the
tables' rows are looked up by id and stay; mask_index is left as it is. The pruned node equals the same op
computed in numpy on the kept columns."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

import onnxprune as op
from onnxprune.axes import ChannelAxis
from onnxprune.runtime.inputs import integer_bounds
from tests.support.checked import checked_prune
from tests.support.handlers_util import analyse, check_all_prunable, group_of, make_model, member_axes

TEXT = """<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
agraph (int32[2,5] ids, int32[2,5] seg, int32[2,5] mask) => (float[2,5,4] y, int32[2] mask_index)
       <float[10,16] word, float[8,16] pos, float[3,16] segtab, float[16] gamma, float[16] beta, float[16,4] w> {
  e, mask_index, s = com.microsoft.EmbedLayerNormalization <epsilon=1e-5> (ids, seg, word, pos, segtab, gamma, beta,
                                                                          mask)
  t = Add (e, s)
  y = MatMul (t, w)
}"""


def _reference(inits: dict, ids: np.ndarray, seg: np.ndarray, kept: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """EmbedLayerNormalization on the kept hidden columns, then Add with the sum and MatMul with w's kept rows."""
    positions = np.arange(ids.shape[1])
    s = inits["word"][ids][..., kept] + inits["pos"][positions][:, kept] + inits["segtab"][seg][..., kept]
    norm = (s - s.mean(-1, keepdims=True)) / np.sqrt(s.var(-1, keepdims=True) + eps)
    return (norm * inits["gamma"][kept] + inits["beta"][kept] + s) @ inits["w"][kept]


def test_embed_layer_norm_prunes_the_hidden_width_of_every_table():
    dg = analyse(TEXT)
    hidden = group_of(dg, "word", 1)
    assert not hidden.exact and "normalized" in hidden.labels and hidden.size == 16
    assert {("pos", 1), ("segtab", 1), ("gamma", 0), ("beta", 0), ("e", 2), ("s", 2), ("w", 0)} <= member_axes(hidden)
    assert ChannelAxis("word", 0) in dg.record.blocks and ChannelAxis("segtab", 0) in dg.record.blocks
    check_all_prunable(dg, expect=1)  # the hidden width (w's output is the protected graph output)


def test_pruned_embed_layer_norm_equals_numpy_on_the_kept_columns():
    model = make_model(TEXT)
    inits = {t.name: np.frombuffer(t.raw_data, np.float32).reshape(t.dims) for t in model.graph.initializer}
    dg = op.analyse_model(model)
    removed = [0, 3, 4, 9, 15]
    pruned = checked_prune(dg, {group_of(dg, "word", 1).id: removed}).model
    kept = np.setdiff1d(np.arange(16), removed)
    rng = np.random.default_rng(1)
    feeds = {"ids": rng.integers(0, 10, (2, 5)).astype(np.int32), "seg": rng.integers(0, 3, (2, 5)).astype(np.int32),
             "mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)}
    y, mask_index = ort.InferenceSession(pruned.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, feeds)
    np.testing.assert_allclose(y, _reference(inits, feeds["ids"], feeds["seg"], kept), rtol=1e-4, atol=1e-4)
    assert mask_index.tolist() == [3, 5]


def test_made_up_ids_stay_below_the_table_rows():
    assert integer_bounds(make_model(TEXT)) == {"ids": 10, "seg": 3}
