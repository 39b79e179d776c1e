"""A ResNet-50-shaped model (torchvision's layout: 7x7/2 stem, max pool, bottleneck stages [3, 4, 6, 3] at widths
64-512 with expansion 4, so block outputs 256-2048, 1000 classes) built from models.cnn's Bottleneck, exported
with BatchNormalization folded like a deployed model."""

from __future__ import annotations

import os

import onnxprune as op
from benchmarks.measure import make_plan, model_stats
from onnxprune import models
from onnxprune.analysis.stats import count_macs, count_params
from onnxprune.validation.bench import benchmark
from onnxprune.validation.validate import validate


def export(path: str, size: int = 224, keep_bn: bool = False) -> str:
    """Export the ResNet-50-like model (TorchScript exporter) to ``path``."""
    return models.export(models.resnet50_spec(size), path, "torchscript", keep_bn=keep_bn)


def run_case(tmp: str, size: int, ratio: float, configs: list[tuple[int, int]], runs: int,
             warmup: int) -> tuple[list[str], dict]:
    """Prune the model at ``ratio`` and compare the MACs reduction with the measured CPU speedup for each
    (batch, threads) in ``configs``; returns markdown lines and the raw figures."""
    path, pruned = os.path.join(tmp, "resnet50_like.onnx"), os.path.join(tmp, "resnet50_like.pruned.onnx")
    export(path, size)
    dg = op.analyse_model(path)
    plan, builder = make_plan(dg, ratio)
    op.apply_plan(dg, plan).save(pruned)
    macs0, params0 = count_macs(dg.graph), count_params(dg.graph)
    macs1, params1 = model_stats(pruned)
    check = validate(path, pruned, plan=plan, oracle=True, batch=1)
    reduction = macs0 / macs1
    lines = [f"### ResNet-50-like at {size}x{size}, ratio {ratio} ({builder})", "",
             f"MACs {macs0 / 1e9:.3f} G -> {macs1 / 1e9:.3f} G (reduction {reduction:.2f}x), params "
             f"{params0 / 1e6:.2f} M -> {params1 / 1e6:.2f} M; {len(plan)} of {len(dg.prunable_groups())} prunable "
             f"groups pruned; mask oracle {'passed' if check.passed else 'FAILED'} "
             f"(max |diff| {check.max_abs_diff:.2g}).", "",
             "| batch | threads | runs | original ms | pruned ms | speedup (medians) | speedup (paired) | "
             "speedup / MACs reduction | other load |", "|---|---|---|---|---|---|---|---|---|"]
    figures = {"macs": (macs0, macs1), "params": (params0, params1), "reduction": reduction, "runs": []}
    for batch, threads in configs:
        n = runs if batch == 1 else max(5, runs // 2)
        report = benchmark([path, pruned], provider="cpu", batch=batch, runs=n, warmup=warmup, threads=threads)
        figures["runs"].append(report.to_dict())
        lines.append(f"| {batch} | {threads} | {n} | {report.models[0].median_ms:.1f} | "
                     f"{report.models[1].median_ms:.1f} | {report.speedup:.2f}x | {report.paired_speedup:.2f}x | "
                     f"{report.speedup / reduction:.2f} | {report.other_load:.2f} |")
    by = {(r["batch"], r["threads"]): r for r in figures["runs"]}
    for batch in dict.fromkeys(b for b, _ in configs):
        multi = [t for b, t in configs if b == batch and t != 1]
        if (batch, 1) in by and multi:
            one, many = by[(batch, 1)]["models"], by[(batch, multi[0])]["models"]
            scale = [one[k]["median_ms"] / many[k]["median_ms"] for k in (0, 1)]
            why = (" (the pruned model's smaller layers split less well across threads, so its speedup at "
                   f"{multi[0]} threads trails the single-thread one)" if scale[1] < 0.95 * scale[0] else "")
            lines += ["", f"Thread scaling at batch {batch}, 1 -> {multi[0]} threads: original {scale[0]:.2f}x, "
                      f"pruned {scale[1]:.2f}x{why}."]
    short = [f"batch {r['batch']}, threads {r['threads']}" for r in figures["runs"]
             if r["speedup"] < 0.8 * reduction]
    lines += ["", f"Issue target (CPU speedup >= 0.8 x MACs reduction = {0.8 * reduction:.2f}x): "
              + (f"NOT met for {'; '.join(short)}." if short else "met in every configuration above.")]
    return lines, figures
