"""Compare a pruned decoder with its mask oracle when the KV-cache shapes differ between them: both run one
prompt with an empty cache (past length 0), each fed caches of its own head count, and their logits are compared
(the oracle's present caches keep zeroed heads the pruned model does not have, so caches are not compared).
``validate_decoder`` is ``prune``'s validation when cache axes are pruned: the mask oracle for mask-exact plans,
drift from the original otherwise, on the logits."""

from __future__ import annotations

import gc
from collections.abc import Callable

import numpy as np
import onnx

from onnxprune.ir.export import ExportedModel, export_graph
from onnxprune.runtime.parts import PartedSession, reference_session
from onnxprune.runtime.sessions import ModelSource, available_provider, make_session
from onnxprune.selection import Plan
from onnxprune.validation.comparison import DEFAULT_MAX_DRIFT, DEFAULT_RTOL, Comparison, output_figures
from onnxprune.validation.oracle import masked_model
from onnxprune.validation.validate import oracle_note


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
    """The head size of the decoder's attention (its first GroupQueryAttention/MultiHeadAttention node), else the
    static last dim of its KV-cache inputs [batch, kv_heads, past, head_size] (plain exports: optimum's)."""
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
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name.startswith("past") and len(dims) == 4 and dims[3].HasField("dim_value"):
            return int(dims[3].dim_value)
    raise ValueError("cannot tell the decoder's head size: no GroupQueryAttention/MultiHeadAttention node with a "
                     "constant projection before it and no KV-cache input past* with a static last dim")


def vocab_of(model: onnx.ModelProto) -> int:
    """The vocabulary size of a decoder: the rows of the embedding table that ``input_ids`` indexes (a Gather or
    GatherBlockQuantized), else the static last dim of its first output (the logits)."""
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("Gather", "GatherBlockQuantized") and node.input[1] == "input_ids" \
                and node.input[0] in shapes:
            return int(shapes[node.input[0]][0])
    dims = model.graph.output[0].type.tensor_type.shape.dim
    if dims and dims[-1].HasField("dim_value"):
        return int(dims[-1].dim_value)
    raise ValueError("cannot tell the decoder's vocabulary size: no embedding Gather of input_ids and no static "
                     "last dim on its first output")


def compare_decoder(reference: ModelSource | Callable[[], ModelSource], candidate: ModelSource, head_size: int,
                    vocab: int, *,
                    batch: int = 2, length: int = 7, seed: int = 0, oracle: bool = True,
                    max_drift: float = DEFAULT_MAX_DRIFT, provider: str = "cpu",
                    ids: np.ndarray | None = None) -> Comparison:
    """Run both decoders on the same prompts with empty caches and compare their logits (the first output)
    with ``compare_arrays``'s oracle tolerance (``oracle``) or drift criterion (1 - cosine of the logits, at most
    ``max_drift``). Prompts: ``ids`` [batch, sequence], else ``batch`` random ones of ``length`` tokens. Either
    model may be a callable that builds it: it is called when its session is made and released after. A big
    reference runs a part at a time (``reference_session``); the candidate always runs whole."""
    given = ids is not None
    if ids is None:
        ids = np.random.default_rng(seed).integers(0, vocab, size=(batch, length))
    batch, length = ids.shape
    resolved = available_provider(provider)
    logits, parts = [], 1
    for k, model in enumerate((reference, candidate)):  # one session at a time, without pre-packed weight copies
        if callable(model):  # built only now, and dropped (with its graph) before the next session
            model = model()
        if k == 0:  # the reference: a big one a part at a time, never all its weights mapped
            session = reference_session(model, provider)
            parts = len(session.parts) if isinstance(session, PartedSession) else 1
        else:  # the candidate, the model that is written, runs whole
            session = make_session(model, provider, fuse=False, prepack=False)
        logits.append(session.run([session.get_outputs()[0].name], decoder_feeds(session, head_size, ids))[0])
        del session, model
        gc.collect()  # graphs are cyclic: free an oracle's arrays now, not at some later collection
    figures = output_figures("logits", logits[0], logits[1])
    reason = "" if logits[0].shape == logits[1].shape else f"logits shape {logits[0].shape} became {logits[1].shape}"
    worst = figures.get("max_abs_diff", float("inf"))
    tolerance = DEFAULT_RTOL * max(1.0, figures.get("max_abs_reference", 0.0)) if oracle else None
    drift = figures.get("drift", float("inf"))
    passed = not reason and (worst <= tolerance if oracle else drift <= max_drift)
    return Comparison(passed=bool(passed), oracle=oracle, max_abs_diff=worst,
                      mean_abs_diff=figures.get("mean_abs_diff", float("inf")), cosine=figures.get("cosine", 0.0),
                      top1_agreement=figures.get("top1_agreement"), drift=drift, tolerance=tolerance,
                      max_drift=None if oracle else max_drift, scale=figures.get("max_abs_reference", 0.0),
                      provider=resolved, inputs=f"{batch} {'given' if given else 'random'} prompts of {length} "
                      "tokens, empty KV cache" + (f"; reference run in {parts} parts" if parts > 1 else ""),
                      outputs=[figures], reason=reason)


def _proto(model: ModelSource) -> onnx.ModelProto:
    """The graph of ``model`` without reading external weights (only names, dims and attributes are needed)."""
    if isinstance(model, ExportedModel):
        return model.proto
    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(str(model), load_external_data=False)


def validate_decoder(plan: Plan, pruned: ModelSource, *, provider: str = "auto",
                     max_drift: float = DEFAULT_MAX_DRIFT, original: ModelSource | None = None,
                     seed: int = 0) -> Comparison:
    """``validate_plan`` for a decoder whose KV-cache head axes were pruned (the cache inputs/outputs change shape,
    so the generic comparer cannot feed both models alike): against the mask oracle when ``plan`` (bound) is
    mask-exact, else drift from the original (``original``, default the analysed graph exported), on the logits of
    random prompts run with empty caches (``compare_decoder``)."""
    dg = plan.depgraph
    analysed = original if original is not None else export_graph(dg.graph, dg.loaded)
    head_size, vocab = head_size_of(_proto(analysed)), vocab_of(_proto(analysed))
    if plan.exact and not plan.refit:
        found = compare_decoder(lambda: masked_model(dg, plan.groups), pruned, head_size, vocab, seed=seed,
                                provider=provider)
        found.exact = True
        return found
    found = compare_decoder(analysed, pruned, head_size, vocab, seed=seed, oracle=False, max_drift=max_drift,
                            provider=provider)
    found.exact, found.note = False, oracle_note(plan)
    return found


def decoder_fidelity(original: ModelSource, structural: ModelSource, refit: ModelSource, batches: list[dict], *,
                     max_drift: float = DEFAULT_MAX_DRIFT, provider: str = "cpu") -> dict:
    """``prune``'s fidelity measure for a decoder whose cache heads were pruned: the logits of the original, the
    pruned model before the refit and after it, on the ``input_ids`` of the held-out calibration ``batches`` (each
    model fed empty caches of its own head count); the same dict as ``pipeline.measure_fidelity``."""
    proto = _proto(original)
    head_size, vocab = head_size_of(proto), vocab_of(proto)
    ids = np.concatenate([b["input_ids"] for b in batches])
    found = [compare_decoder(original, model, head_size, vocab, oracle=False, max_drift=max_drift,
                             provider=provider, ids=ids) for model in (structural, refit)]
    rows = [{"model": "original", "top1_agreement": None, "cosine": 1.0, "max_abs_diff": 0.0, "mean_abs_diff": 0.0,
             "drift": 0.0}]
    for name, comparison in zip(("pruned", "pruned + reconstructed"), found):
        rows.append({"model": name, "top1_agreement": comparison.top1_agreement, "cosine": comparison.cosine,
                     "max_abs_diff": comparison.max_abs_diff, "mean_abs_diff": comparison.mean_abs_diff,
                     "drift": comparison.drift})
    return {"samples": found[0].inputs, "rows": rows, "pruned": found[0].to_dict(),
            "reconstructed": found[1].to_dict()}
