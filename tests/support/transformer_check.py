"""Shared checks of the transformer tests: analyse with the right factor policy, the two plans (heads 0.5 + MLP 0.5;
hidden size 0.5), feeds at batch and sequence sizes other than the export's, and what the removed structure should
cost: for models/ transformers the same architecture built natively at the smaller sizes and exported the same way,
for ``transformers`` models a count from the architecture (per removed head, MLP unit or hidden channel)."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter

import numpy as np
import onnx
import onnx_graphsurgeon as gs

import onnxprune as op
from onnxprune import models
from onnxprune.analysis.stats import count_macs
from onnxprune.axes import ChannelAxis
from onnxprune.runtime import make_session
from onnxprune.scoring.importance import compute_importance
from onnxprune.search import plan_pruning
from onnxprune.selection import SelectionOptions, is_heads, is_hidden, select
from onnxprune.validation.oracle import compare

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BATCHES = (1, 3)
SEQS = (5, 9)  # the exports use 12 tokens
HIDDEN_KEPT = 16  # hidden-size pruning at 0.5 keeps 16 of 32


def analyse(path: str, spec: models.ModelSpec, policy: str = "largest", hidden_output: bool = False,
            repeat_policy: str | None = None) -> op.DependencyGraph:
    """The dependency graph; ``hidden_output`` lets the hidden axis of a last_hidden_state output be pruned."""
    allowed = {ChannelAxis("output", 2)} if hidden_output and spec.extra["hidden_output"] else set()
    return op.analyse_model(path, options=op.AnalysisOptions(factor_policy=policy, allowed_io_axes=allowed,
                                                             repeat_policy=repeat_policy))


def heads_mlp_plan(dg) -> dict[int, list[int]]:
    """l2 plan: heads 0.5, every other group 0.5, hidden size kept."""
    return plan_pruning(dg, "l2", SelectionOptions(ratio=0.5, heads_ratio=0.5, no_hidden=True)).groups


def hidden_plan(dg) -> dict[int, list[int]]:
    """l2 plan removing half of every hidden-size group and nothing else."""
    groups = [g for g in dg.prunable_groups() if is_hidden(g)]
    return select(dg, compute_importance(dg, groups=groups), SelectionOptions(ratio=0.5))


def feeds(spec: models.ModelSpec, batch: int, seq: int | None) -> dict[str, np.ndarray]:
    """Inputs for the given batch and sequence length (ignored for images)."""
    inputs = spec.example_inputs(batch) if seq is None else spec.example_inputs(batch, seq)
    return {name: t.numpy() for name, t in zip(spec.input_names, inputs)}


def shapes_to_test(spec: models.ModelSpec) -> list[tuple[int, int | None]]:
    """(batch, seq) pairs: batch 1 and 3, two sequence lengths where the sequence is dynamic."""
    seqs = SEQS if spec.extra["dynamic_seq"] else (None,)
    return [(b, s) for b in BATCHES for s in seqs]


def run_oracle(dg, plan, pruned: onnx.ModelProto, spec: models.ModelSpec) -> float:
    """Compare the pruned model with the mask oracle at every (batch, seq); returns the largest difference."""
    masked = op.masked_model(dg, plan)
    worst = 0.0
    for batch, seq in shapes_to_test(spec):
        report = compare(masked, pruned, feeds=feeds(spec, batch, seq))
        assert report.passed, (batch, seq, report)
        worst = max(worst, report.max_abs_diff)
    return worst


def drift(dg, pruned: onnx.ModelProto, spec: models.ModelSpec, removed_out: np.ndarray) -> float:
    """Largest |pruned - original| over every (batch, seq), on the output columns the pruned model kept."""
    from onnxprune.ir.export import export_graph

    original = make_session(export_graph(dg.graph, dg.loaded), "cpu")
    smaller = make_session(pruned, "cpu")
    worst = 0.0
    for batch, seq in shapes_to_test(spec):
        f = feeds(spec, batch, seq)
        (ref,), (got,) = original.run(None, f), smaller.run(None, f)
        if len(removed_out):
            ref = np.delete(ref, removed_out, axis=-1)
        assert got.shape == ref.shape and np.all(np.isfinite(got)), (got.shape, ref.shape)
        worst = max(worst, float(np.max(np.abs(got - ref))))
    return worst


def static_stats(model: onnx.ModelProto | str, spec: models.ModelSpec, seq: int = 12) -> tuple[int, int]:
    """(params, MACs of one sample at a static sequence length; dynamic dims would count as 1). Params count
    float constants of more than one element, on the model as given (with static shapes, position tables fold
    into per-position constants): scalars (scales, epsilons) are not structure, and exporters merge equal ones
    differently from one model size to another."""
    params = sum(int(np.prod(s)) for s in weight_shapes(model).elements())
    return params, count_macs(_static_graph(model, seq))


def _static_graph(model: onnx.ModelProto | str, seq: int) -> gs.Graph:
    proto = onnx.load(model) if isinstance(model, str) else model
    shapes = {}
    for inp in proto.graph.input:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        shapes[inp.name] = [1 if k == 0 else (seq if d is None else d) for k, d in enumerate(dims)]
    return op.load(proto, input_shapes=shapes).graph


def weight_shapes(model: onnx.ModelProto | str | gs.Graph) -> Counter:
    """Multiset of the shapes of the float constants (more than one element) that nodes use."""
    graph = model if isinstance(model, gs.Graph) else op.load(model).graph
    found = {t.name: tuple(t.shape) for node in graph.nodes for t in node.inputs
             if isinstance(t, gs.Constant) and np.issubdtype(np.dtype(t.dtype), np.floating) and t.values.size > 1}
    return Counter(found.values())


def removed_units(dg, plan) -> dict[str, list[int]]:
    """Units removed per kind of group ('heads', 'hidden', 'mlp', 'pooler'), one entry per pruned group; MLP and
    pooler groups are told apart by size (the architecture's MLP width or the model width)."""
    kinds: dict[str, list[int]] = {}
    for gid, units in plan.items():
        group = dg.group(gid)
        kind = "heads" if is_heads(group) else "hidden" if is_hidden(group) else \
            "head_dim" if "head_dim" in group.labels else "mlp" if group.size == models.transformers.MLP else "pooler"
        kinds.setdefault(kind, []).append(len(units))
    return kinds


def native_smaller(spec: models.ModelSpec, exporter: str, out_dir, **sizes) -> str:
    """Export the models/ architecture of ``spec`` built at ``sizes`` (no pruning involved)."""
    ctor = spec.extra["ctor"]
    small = dataclasses.replace(spec, name=f"{spec.name}_native", build=lambda: ctor(**sizes).eval())
    return models.export(small, os.path.join(out_dir, f"{spec.name}.{exporter}.native.onnx"), exporter=exporter,
                         keep_bn=True)


def structure_cost(spec: models.ModelSpec, kinds: dict[str, list[int]], seq: int) -> tuple[int, int]:
    """(params, MACs at batch 1 and ``seq`` tokens) that removing the given units costs, from the architecture:
    per query head its q rows (+ bias) and output-projection columns and its two attention products, per key/value
    head its k and v rows (+ bias); per MLP unit its rows and columns (+ bias; three matrices for SwiGLU); per
    hidden channel see ``HIDDEN_COST``."""
    x = spec.extra
    d, hd, b = x["hidden"], x["head_dim"], int(x["bias"])
    seq = x["tokens"] or seq
    n_rep = x["heads"] // x["kv_heads"]
    params = macs = 0
    for r in kinds.get("heads", []):
        q, kv = (r * n_rep, r) if n_rep > 1 else (r, r)  # GQA 'leading': a unit is a KV head with its query heads
        params += q * hd * (d + b) + 2 * kv * hd * (d + b) + q * hd * d
        macs += seq * d * hd * (2 * q + 2 * kv) + 2 * q * seq * seq * hd
    for r in kinds.get("mlp", []):
        params += r * (3 * d if x["swiglu"] else 2 * d + b)
        macs += seq * d * r * (3 if x["swiglu"] else 2)
    for r in kinds.get("pooler", []):  # BERT-style pooler Linear(d, d) on the first token, classifier after it
        params += r * (d + 1 + 5)
        macs += r * (d + 5)
    for r in kinds.get("hidden", []):
        per_param, per_mac_token, per_mac_fixed = HIDDEN_COST[spec.name]
        params += r * per_param
        macs += r * (per_mac_token * seq + per_mac_fixed)
    return params, macs


# Per hidden channel of the ``transformers`` models (hidden 32, attention 4 x 8, MLP 64, 2 layers, vocab 100,
# 64 positions): (params, MACs per token, MACs per sample). Per layer a hidden channel is one column of q, k, v
# and of the first MLP matrix (two for SwiGLU), one row (+ bias) of the attention output and last MLP matrix, and
# one entry of each norm's weight (+ bias). BERT 96 + 33 + 2 + 64 + 65 + 2 = 262 per layer, embeddings 100 + 64 +
# 2 token types + LN 2; ViT same layers, patch conv 3*8*8 + 1, class token 1, 17 positions, final LN 2 (MACs:
# 16 patches x 192 per sample); GPT-2 262 per layer, wte 100 + wpe 64, ln_f 2; LLaMA (no bias, GQA k/v 16 wide)
# 1 + 32 + 16 + 16 + 32 + 1 + 64 + 64 + 64 = 290 per layer, embedding 100, final norm 1, LM head 100 (MACs 100
# per token).
HIDDEN_COST = {"hf_bert": (2 * 262 + 168, 2 * 256, 0), "hf_vit": (2 * 262 + 193 + 1 + 17 + 2, 0, 17 * 2 * 256 + 3072),
               "hf_gpt2": (2 * 262 + 166, 2 * 256, 0), "hf_llama": (2 * 290 + 201, 2 * 288 + 100, 0)}


def named_weight_shapes(model: onnx.ModelProto | str) -> dict[str, tuple]:
    """{name: shape} of the float constants (more than one element) that nodes use, as onnxprune loads them."""
    graph = op.load(model).graph
    return {t.name: tuple(t.shape) for node in graph.nodes for t in node.inputs
            if isinstance(t, gs.Constant) and np.issubdtype(np.dtype(t.dtype), np.floating) and t.values.size > 1}
