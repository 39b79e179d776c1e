"""Latency of transformers pruned by heads 0.5 + MLP 0.5 (hidden size kept): the models/ BERT-style encoder and
GPT-style decoder at benchmark widths (hidden 256, 4 heads of 64, MLP 1024, 4 layers, vocab 512, 512 positions),
exported by TorchScript with dynamic batch and sequence, timed on onnxruntime at sequence lengths 128 and 512,
original and pruned alternating run by run in one process (CPU; CUDA too where it works).

    python -m benchmarks.bench_transformers [--seqs 128 512] [--batch 1] [--threads 0] [--min-seconds 5]
                                            [--out benchmarks/results_transformers.md]

The pruned model is first checked against the mask oracle (heads and MLP groups are mask-exact) at 16 tokens.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import onnxprune as op  # noqa: E402
from benchmarks.measure import machine
from onnxprune import models
from onnxprune.analysis.stats import count_macs, count_params  # noqa: E402
from onnxprune.runtime import cuda_works, make_session, random_inputs  # noqa: E402
from onnxprune.search import plan_pruning  # noqa: E402
from onnxprune.selection import SelectionOptions, is_heads  # noqa: E402
from onnxprune.validation.bench import benchmark  # noqa: E402
from onnxprune.validation.oracle import compare  # noqa: E402

WIDTHS = {"dim": 256, "heads": 4, "head_dim": 64, "mlp": 1024, "layers": 4, "vocab": 512, "positions": 512}
MODELS = {"bert_encoder": models.transformers.BertEncoder, "gpt_decoder": models.transformers.GPTDecoder}


def export_wide(name: str, out_dir: str) -> str:
    """The zoo spec of ``name`` with the benchmark widths, exported by TorchScript (dynamic batch and sequence)."""
    ctor = MODELS[name]
    spec = dataclasses.replace(models.ZOO[name], name=f"{name}_wide", build=lambda: ctor(**WIDTHS).eval())
    return models.export(spec, os.path.join(out_dir, f"{name}_wide.onnx"), exporter="torchscript", keep_bn=True)


def _static_macs(path_or_model, seq: int) -> int:
    import onnx

    proto = onnx.load(path_or_model) if isinstance(path_or_model, str) else path_or_model
    shapes = {i.name: [1, seq] for i in proto.graph.input}
    return count_macs(op.load(proto, input_shapes=shapes).graph)


def prune(path: str) -> tuple:
    """Heads 0.5 + MLP 0.5 with l2 (analysis policy 'leading', hidden size kept); returns (pruned model, dg,
    plan, oracle max abs diff at 16 tokens)."""
    dg = op.analyse_model(path, options=op.AnalysisOptions(factor_policy="leading"))
    plan = plan_pruning(dg, "l2", SelectionOptions(ratio=0.5, heads_ratio=0.5, no_hidden=True)).groups
    result = op.apply_plan(dg, plan)
    masked = op.masked_model(dg, plan)
    feeds = random_inputs(make_session(masked, "cpu"), batch=2, dims={"batch": 2, "seq": 16})
    report = compare(masked, result.model, feeds=feeds)
    assert report.passed, report
    return result.model, dg, plan, report.max_abs_diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqs", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--min-seconds", type=float, default=5.0)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "results_transformers.md"))
    args = parser.parse_args()
    info = machine()
    providers = ["cpu"] + (["cuda"] if cuda_works() else [])
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            path = export_wide(name, tmp)
            pruned, dg, plan, diff = prune(path)
            heads = [len(u) for g, u in plan.items() if is_heads(dg.group(g))]
            params = (count_params(dg.graph), count_params(op.load(pruned).graph))
            for seq in args.seqs:
                macs = (_static_macs(path, seq), _static_macs(pruned, seq))
                for provider in providers:
                    report = benchmark([path, pruned], provider=provider, batch=args.batch, runs=10, warmup=3,
                                       threads=args.threads, dims={"batch": args.batch, "seq": seq},
                                       min_seconds=args.min_seconds)
                    rows.append((name, seq, provider, len(plan), sum(heads), macs, params, diff, report))
                    m0, m1 = report.models[0].median_ms, report.models[1].median_ms
                    print(f"{name} seq {seq} {provider}: {m0:.2f} -> {m1:.2f} ms ({m1 / m0:.3f}), "
                          f"MACs {macs[1] / macs[0]:.3f}, {report.runs} runs", flush=True)
    seconds = time.perf_counter() - start
    lines = ["# onnxprune transformer benchmark", "",
             f"- machine: {info['cpu']} ({info['simd']}), {info['cores']} cores; load average at start "
             f"{info['load'][0]}; onnxruntime {info['onnxruntime']}, onnx {info['onnx']}; "
             f"CUDA {'available' if info['cuda'] else 'not available (CPU only)'}",
             f"- models: models/ BertEncoder and GPTDecoder at hidden {WIDTHS['dim']}, {WIDTHS['heads']} heads of "
             f"{WIDTHS['head_dim']}, MLP {WIDTHS['mlp']}, {WIDTHS['layers']} layers, vocab {WIDTHS['vocab']}; "
             "TorchScript export, dynamic batch and sequence",
             "- pruning: l2, heads 0.5 (whole heads: Q, K, V rows and output-projection columns) + MLP 0.5 (and the "
             "BERT pooler 0.5), hidden size kept (`--heads-ratio 0.5 --ratio 0.5 --no-hidden`); the pruned model "
             "equals the mask oracle (max abs diff shown) at 16 tokens",
             f"- timing: batch {args.batch}, original and pruned alternating run by run, at least "
             f"{args.min_seconds:g} s of runs after 3 warm-up, intra-op threads "
             f"{args.threads or 'default'}, spinning off; latency = median; ratio = pruned / original",
             f"- total benchmark time {seconds:.0f} s", "",
             "| model | seq | provider | groups pruned | heads removed | MACs ratio | params ratio | oracle diff | "
             "original ms | pruned ms | latency ratio | speedup | runs | other load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, seq, provider, groups, heads, macs, params, diff, report in rows:
        m0, m1 = report.models[0].median_ms, report.models[1].median_ms
        load = "n/a" if report.other_load is None else f"{report.other_load:.2f}"
        lines.append(f"| {name} | {seq} | {provider} | {groups} | {heads} of {WIDTHS['heads'] * WIDTHS['layers']} | "
                     f"{macs[1] / macs[0]:.3f} | {params[1] / params[0]:.3f} | {diff:.1e} | {m0:.2f} | {m1:.2f} | "
                     f"{m1 / m0:.3f} | {m0 / m1:.2f}x | {report.runs} | {load} |")
    lines += ["", "MACs count every MatMul/Gemm at batch 1 and the given sequence length (attention products "
              "included, so the MACs ratio falls as the sequence grows only through the removed heads' share); "
              "params include the embeddings and the tied/untied LM head, which keep the hidden size.", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
