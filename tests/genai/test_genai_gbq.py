"""A real GatherBlockQuantized: onnxruntime-genai's builder, int4 with shared_embeddings=true on a Llama whose
embeddings are tied, reads the token embeddings from the lm_head MatMulNBits' packed weights (Reshape ->
GatherBlockQuantized, uint8, 4 bits, block 16). Its hidden width prunes in whole blocks: the pruned embedding lookup
equals the original's kept columns exactly, the MLP-only plan equals the mask oracle, and the pruned directory
generates in onnxruntime-genai. The hidden width is not mask-exact over the whole decoder (RMSNorm), so there the
logits' drift from the original is measured and bounded."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxprune
from onnxprune.axes import ChannelAxis
from onnxprune.genai import cache_io_axes, compare_decoder, rewrite_genai_dir
from onnxprune.genai.decoder import head_size_of
from onnxprune.validation.oracle import masked_model
from tests.genai.builders import SIZES, VOCAB, build, save_hf_model
from tests.genai.test_genai_models import _generate

BLOCK = 16
GBQ = "GatherBlockQuantized"


@pytest.fixture(scope="module")
def tied_int4(tmp_path_factory):
    """model.onnx of a tied-embedding Llama built in int4 with shared embeddings (block size 16: 4 hidden blocks)."""
    pytest.importorskip("onnxruntime_genai")
    root = tmp_path_factory.mktemp("genai_gbq")
    hf = save_hf_model("llama", root / "hf", tie_word_embeddings=True)
    return build(hf, root / "onnx", "int4", ("shared_embeddings=true", f"block_size={BLOCK}"))


def _embedding(path, ids: np.ndarray) -> np.ndarray:
    """The GatherBlockQuantized output of the decoder at ``path`` for ``ids``: its node and what computes its inputs
    (the Reshape of the shared weights), cut out as a model of their own and run in onnxruntime."""
    model = onnx.load(str(path))
    node = next(n for n in model.graph.node if n.op_type == GBQ)
    producers = {o: n for n in model.graph.node for o in n.output}
    needed, todo = [], [node]
    while todo:
        current = todo.pop()
        if current not in needed:
            needed.append(current)
            todo += [producers[i] for i in current.input if i in producers]
    names = {i for n in needed for i in n.input}
    graph = onnx.helper.make_graph(
        needed[::-1], "embedding", [onnx.helper.make_tensor_value_info("input_ids", onnx.TensorProto.INT64, None)],
        [onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)],
        [i for i in model.graph.initializer if i.name in names])
    cut = onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    session = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input_ids": ids})[0]


def node_of(model: onnx.ModelProto, op_type: str, name: str = "") -> onnx.NodeProto:
    """The one node of ``op_type`` (whose name contains ``name``) in ``model``."""
    found = [n for n in model.graph.node if n.op_type == op_type and name in n.name]
    assert len(found) == 1, [n.name for n in found]
    return found[0]


def _prune(src, out_dir, **options):
    pruned = onnxprune.prune(str(src), heads_ratio=0.0, validate=False, allowed_io_axes=tuple(cache_io_axes(src)),
                             **options)
    out = out_dir / "model.onnx"
    pruned.save(out)
    rewrite_genai_dir(src, out, pruned.model)
    return pruned, out


def test_builder_output_has_the_op(tied_int4):
    model = onnx.load(str(tied_int4), load_external_data=False)
    node = next(n for n in model.graph.node if n.op_type == GBQ)
    attrs = {a.name: a.i for a in node.attribute}
    assert node.domain == "com.microsoft" and attrs == {"bits": 4, "block_size": BLOCK, "gather_axis": 0,
                                                        "quantize_axis": 1}
    dg = onnxprune.analyse_model(str(tied_int4))
    hidden = dg.group_of(node.output[0], 2)
    assert len(hidden) == 1 and hidden[0].prunable and hidden[0].size == SIZES["hidden_size"] // BLOCK


def test_hidden_width_prunes_through_the_quantized_embedding(tied_int4, tmp_path):
    pruned, out = _prune(tied_int4, tmp_path, ratio=0.25)
    node = next(n for n in pruned.model.graph.node if n.op_type == GBQ)
    dg = pruned.plan.depgraph
    group = dg.group_of(node.output[0], 2)[0]
    removed = dg.resolve(pruned.plan.groups)[ChannelAxis(node.output[0], 2)]
    assert len(removed) == BLOCK and group.id in pruned.plan.groups  # one whole block of 16 of the 64 channels
    kept = np.setdiff1d(np.arange(SIZES["hidden_size"]), removed)
    ids = np.arange(VOCAB, dtype=np.int64)[None]
    before, after = _embedding(tied_int4, ids), _embedding(out, ids)
    assert after.shape == (1, VOCAB, len(kept)) and np.abs(before).max() > 0
    assert np.array_equal(after, before[..., kept])  # the kept columns dequantize exactly as before
    config = json.loads((tmp_path / "genai_config.json").read_text())["model"]["decoder"]
    assert config["hidden_size"] == len(kept)
    head_size = head_size_of(onnx.load(str(tied_int4), load_external_data=False))
    drift = compare_decoder(str(tied_int4), str(out), head_size, VOCAB, oracle=False, max_drift=0.5)
    assert drift.passed and drift.max_abs_diff > 0, drift.format()  # hidden width: RMSNorm, not mask-exact
    tokens = _generate(tmp_path)
    assert len(tokens) == 30 and all(0 <= t < VOCAB for t in tokens)
    # the table stays tied to the lm_head as in the input: a Reshape of its packed weights, the same scales
    written = onnx.load(str(out), load_external_data=False)
    nodes = {o: n for n in written.graph.node for o in n.output}
    gather, head = node_of(written, GBQ), node_of(written, "MatMulNBits", "lm_head")
    assert nodes[gather.input[0]].op_type == "Reshape" and nodes[gather.input[0]].input[0] == head.input[1]
    assert gather.input[2] == head.input[2]


@pytest.mark.slow
def test_mlp_width_beside_the_quantized_embedding_matches_the_oracle(tied_int4, tmp_path):
    pruned, out = _prune(tied_int4, tmp_path, ratio=0.25, no_hidden=True)
    head_size = head_size_of(onnx.load(str(tied_int4), load_external_data=False))
    oracle = compare_decoder(masked_model(pruned.plan.depgraph, pruned.plan.groups), str(out), head_size, VOCAB)
    assert oracle.passed, oracle.format()
    assert len(_generate(tmp_path)) == 30
