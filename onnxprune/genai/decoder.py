"""Compare a pruned decoder with its mask oracle when the KV-cache shapes differ between them: both run one
prompt with an empty cache (past length 0), each fed caches of its own head count, and their logits are compared
(the oracle's present caches keep zeroed heads the pruned model does not have, so caches are not compared)."""

from __future__ import annotations

import numpy as np
import onnx

from onnxprune.runtime.sessions import ModelSource, make_session
from onnxprune.validation.comparison import DEFAULT_MAX_DRIFT, DEFAULT_RTOL, Comparison, output_figures


def decoder_feeds(session, head_size: int, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Feeds for a decoder session: ``ids`` [batch, sequence] as input_ids, an all-ones attention mask, position
    ids 0..S-1 where asked for, and empty KV caches [batch, heads, 0, head_size] of the session's head count."""
    batch, length = ids.shape
    feeds = {}
    for value in session.get_inputs():
        if value.name == "input_ids":
            feeds[value.name] = ids.astype(np.int64)
        elif value.name == "attention_mask":
            feeds[value.name] = np.ones((batch, length), dtype=np.int64)
        elif value.name == "position_ids":
            feeds[value.name] = np.tile(np.arange(length, dtype=np.int64), (batch, 1))
        elif len(value.shape) == 4:
            heads = value.shape[1]
            dtype = np.float16 if "float16" in value.type else np.float32
            feeds[value.name] = np.zeros((batch, heads, 0, head_size), dtype=dtype)
        else:
            raise ValueError(f"decoder input '{value.name}' {value.shape} is not one onnxprune knows how to feed")
    return feeds


def head_size_of(model: onnx.ModelProto) -> int:
    """The head size of the decoder's attention (its first GroupQueryAttention/MultiHeadAttention node)."""
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("GroupQueryAttention", "MultiHeadAttention"):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            producer = next(n for n in model.graph.node if node.input[0] in n.output)
            if producer.op_type == "MatMulNBits":  # B is [N, blocks, bytes]: the width is the N attribute
                width = next(onnx.helper.get_attribute_value(a) for a in producer.attribute if a.name == "N")
            else:
                width = shapes[producer.input[1]][-1] if producer.input[1] in shapes else None
            if width is None:
                break
            packed = len(node.input) < 2 or not node.input[1]
            heads, kv = attrs["num_heads"], attrs.get("kv_num_heads", attrs["num_heads"])
            return width // (heads + 2 * kv) if packed else width // heads
    raise ValueError("no GroupQueryAttention/MultiHeadAttention node with a constant projection before it")


def compare_decoder(reference: ModelSource, candidate: ModelSource, head_size: int, vocab: int, *,
                    batch: int = 2, length: int = 7, seed: int = 0, oracle: bool = True) -> Comparison:
    """Run both decoders on the same random prompt with empty caches and compare their logits (the first output)
    with ``compare_arrays``'s oracle tolerance (``oracle``) or drift criterion."""
    ids = np.random.default_rng(seed).integers(0, vocab, size=(batch, length))
    logits = []
    for model in (reference, candidate):
        session = make_session(model, "cpu", fuse=False)
        logits.append(session.run([session.get_outputs()[0].name], decoder_feeds(session, head_size, ids))[0])
        del session
    figures = output_figures("logits", logits[0], logits[1])
    reason = "" if logits[0].shape == logits[1].shape else f"logits shape {logits[0].shape} became {logits[1].shape}"
    worst = figures.get("max_abs_diff", float("inf"))
    tolerance = DEFAULT_RTOL * max(1.0, figures.get("max_abs_reference", 0.0)) if oracle else None
    drift = figures.get("drift", float("inf"))
    passed = not reason and (worst <= tolerance if oracle else drift <= DEFAULT_MAX_DRIFT)
    return Comparison(passed=bool(passed), oracle=oracle, max_abs_diff=worst,
                      mean_abs_diff=figures.get("mean_abs_diff", float("inf")), cosine=figures.get("cosine", 0.0),
                      top1_agreement=figures.get("top1_agreement"), drift=drift, tolerance=tolerance,
                      max_drift=None if oracle else DEFAULT_MAX_DRIFT, scale=figures.get("max_abs_reference", 0.0),
                      provider="CPUExecutionProvider", inputs=f"{batch} random prompts of {length} tokens, empty KV "
                      "cache", outputs=[figures], reason=reason)
