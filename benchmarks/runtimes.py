"""Pruned models on two runtimes (issue 13 part 6): onnxruntime CPU and OpenVINO CPU, each checked and timed.

Models: ResNet-50 (torchvision's layout at real widths, random weights, 224x224, BatchNormalization folded) pruned at
0.5 (l2, every prunable group), and a transformer with BERT-base widths (models/ BertEncoder: hidden 768, 12 heads
of 64, MLP 3072, vocab 30522, 512 positions; ``--layers`` blocks) pruned by heads 0.5 + MLP 0.5 with the hidden
size kept. Each pruned model is checked against the mask oracle on both runtimes (the oracle itself runs on
onnxruntime), then original and pruned are timed alternately in one process on each runtime, at batch 1 and a
larger batch (``benchmark``: warm-up, at least ``--min-seconds`` of runs, median; OpenVINO at f32 with the
LATENCY hint). Random weights are fine for latency; no accuracy is claimed here.

    python -m benchmarks.runtimes [--batches 1 8] [--seq 128] [--layers 12] [--min-seconds 3]
                                  [--out benchmarks/results_runtimes.md]

The model helpers (``export_resnet50``, ``export_bert_base``, ``SUBJECTS``) are shared with ``benchmarks.gpu_check``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import tempfile
import time
from dataclasses import dataclass

from benchmarks.measure import emit, machine, model_stats
from onnxprune import models
from onnxprune.pipeline import PruneOptions, prune_file
from onnxprune.runtime import openvino_version
from onnxprune.validation.bench import BenchReport, benchmark
from onnxprune.validation.validate import validate

BERT_BASE = {"dim": 768, "heads": 12, "head_dim": 64, "mlp": 3072, "vocab": 30522, "positions": 512}


def export_resnet50(out_dir: str, size: int = 224) -> str:
    """ResNet-50 at real widths on ``size`` x ``size`` images (dynamic batch), TorchScript, BN folded."""
    spec = models.resnet50_spec(size)
    return models.export(spec, os.path.join(out_dir, f"{spec.name}.onnx"), "torchscript", keep_bn=False)


def export_bert_base(out_dir: str, layers: int = 12, widths: dict | None = None) -> str:
    """models/ BertEncoder at BERT-base widths (or ``widths``) with ``layers`` blocks, TorchScript, dynamic batch
    and sequence."""
    sizes = {**BERT_BASE, **(widths or {}), "layers": layers}
    name = f"bert_{sizes['dim']}x{layers}"
    spec = dataclasses.replace(models.ZOO["bert_encoder"], name=name,
                               build=lambda: models.transformers.BertEncoder(**sizes).eval())
    return models.export(spec, os.path.join(out_dir, f"{name}.onnx"), "torchscript", keep_bn=True)


@dataclass(frozen=True)
class Subject:
    """A benchmark model: how it is pruned (``prune`` options beside the ratio) and described."""

    label: str
    options: dict
    cli: tuple[str, ...]
    pruning: str


SUBJECTS = {
    "resnet50": Subject("ResNet-50", {}, (), "l2 0.5 on every prunable group (`--ratio 0.5`)"),
    "bert_base": Subject("BERT-base-like encoder",
                         {"heads_ratio": 0.5, "no_hidden": True, "factor_policy": "leading"},
                         ("--heads-ratio", "0.5", "--no-hidden", "--factor-policy", "leading"),
                         "l2, heads 0.5 + MLP 0.5, hidden size kept (`--ratio 0.5 --heads-ratio 0.5 --no-hidden`)"),
}


def prune_subject(name: str, source: str, output: str, ratio: float = 0.5, provider: str = "cpu") -> tuple[dict, str]:
    """Prune ``source`` into ``output`` as ``SUBJECTS[name]`` says, validated on ``provider``; (report, plan path)."""
    plan = os.path.splitext(output)[0] + ".plan.json"
    options = PruneOptions(ratio=ratio, provider=provider, **SUBJECTS[name].options)
    return prune_file(source, output, options, plan_path=plan), plan


def _row(name: str, batch: int, report: BenchReport) -> dict:
    m0, m1 = report.models[0].median_ms, report.models[1].median_ms
    return {"model": name, "batch": batch, "runtime": report.runtime, "provider": report.provider, "original": m0,
            "pruned": m1, "speedup": m0 / m1, "paired": report.paired_speedup, "runs": report.runs,
            "load": report.other_load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SUBJECTS), choices=list(SUBJECTS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "results_runtimes.md"))
    args = parser.parse_args()
    info, start = machine(), time.perf_counter()
    rows, checks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            source = export_resnet50(tmp, args.size) if name == "resnet50" else export_bert_base(tmp, args.layers)
            output = os.path.join(tmp, f"{name}.pruned.onnx")
            report, plan = prune_subject(name, source, output)
            (macs0, params0), (macs1, params1) = model_stats(source), model_stats(output)
            on_ov = validate(source, output, plan=plan, oracle=True, runtime="openvino")
            checks.append((name, report["validation"], on_ov.to_dict(), macs1 / macs0, params1 / params0))
            print(f"{name}: onnxruntime {report['validation']['max_abs_diff']:.2e}, OpenVINO "
                  f"{on_ov.max_abs_diff:.2e} ({'PASSED' if on_ov.passed else 'FAILED'})", flush=True)
            for batch in args.batches:
                dims = {"batch": batch, "seq": args.seq}
                for runtime in ("onnxruntime", "openvino"):
                    timing = benchmark([source, output], provider="cpu" if runtime == "onnxruntime" else "auto",
                                       runtime=runtime, batch=batch, runs=10, warmup=3, dims=dims,
                                       min_seconds=args.min_seconds)
                    rows.append(_row(name, batch, timing))
                    r = rows[-1]
                    print(f"{name} batch {batch} {runtime}: {r['original']:.2f} -> {r['pruned']:.2f} ms "
                          f"({r['speedup']:.2f}x, {r['runs']} runs)", flush=True)
    seconds = time.perf_counter() - start
    emit(format_results(args, info, rows, checks, seconds), args.out)


def format_results(args, info: dict, rows: list[dict], checks: list, seconds: float) -> str:
    """The markdown block: setup, checks on both runtimes, and one latency row per (model, batch, runtime)."""
    today = datetime.date.today().isoformat()
    lines = [f"## {today}: onnxruntime CPU vs OpenVINO CPU, models pruned at 0.5", "",
             f"- command: `python -m benchmarks.runtimes --batches {' '.join(map(str, args.batches))} --seq "
             f"{args.seq} --layers {args.layers} --size {args.size} --min-seconds {args.min_seconds:g}`",
             f"- machine: {info['cpu']} ({info['simd']}), {info['cores']} cores, load average at start "
             f"{info['load'][0]}; onnxruntime {info['onnxruntime']}, OpenVINO {short_version()}, "
             f"onnx {info['onnx']}; total {seconds:.0f} s",
             f"- models: ResNet-50 (torchvision layout, random weights, {args.size}x{args.size}, BN folded); "
             f"BERT-base-like encoder (models/ BertEncoder, hidden 768, 12 heads of 64, MLP 3072, {args.layers} "
             f"layers, vocab 30522) at sequence {args.seq}; TorchScript exports, dynamic batch (and sequence)",
             "- pruning: " + "; ".join(f"{SUBJECTS[n].label}: {SUBJECTS[n].pruning}" for n in args.models),
             "- timing: original and pruned alternating run by run in one process, per runtime, at least "
             f"{args.min_seconds:g} s of runs after 3 warm-up; default threads; onnxruntime CPUExecutionProvider "
             "with full graph optimisation and spinning off; OpenVINO CPU plugin at f32 (INFERENCE_PRECISION_HINT) "
             "with the LATENCY hint; speedup = median original / median pruned, paired = median of per-round "
             "ratios; other load = share of the machine's CPU time other processes took while timing", "",
             "| model | MACs ratio | params ratio | vs mask oracle on onnxruntime | vs mask oracle on OpenVINO |",
             "|---|---|---|---|---|"]
    for name, ort_check, ov_check, macs, params in checks:
        lines.append(f"| {SUBJECTS[name].label} | {macs:.3f} | {params:.3f} | "
                     f"{_verdict(ort_check)} | {_verdict(ov_check)} |")
    lines += ["", "| model | batch | runtime | original ms | pruned ms | speedup | paired | runs | other load |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        load = "n/a" if r["load"] is None else f"{r['load']:.2f}"
        where = runtime_label(r["runtime"], r["provider"])
        lines.append(f"| {SUBJECTS[r['model']].label} | {r['batch']} | {where} | {r['original']:.2f} | "
                     f"{r['pruned']:.2f} | {r['speedup']:.2f}x | {r['paired']:.2f}x | {r['runs']} | {load} |")
    return "\n".join(lines)


def runtime_label(runtime: str, provider: str) -> str:
    """'onnxruntime CPU', 'onnxruntime CUDA', 'onnxruntime Tensorrt' or 'OpenVINO CPU'."""
    return provider if runtime == "openvino" else "onnxruntime " + provider.removesuffix("ExecutionProvider")


def short_version() -> str:
    """OpenVINO's release number (2026.4.1), without the build tag."""
    return (openvino_version() or "not installed").split("-")[0]


def _verdict(check: dict) -> str:
    verdict = "PASSED" if check["passed"] else "FAILED"
    return f"{verdict}, max abs diff {check['max_abs_diff']:.1e} (tolerance {check['tolerance']:.1e})"


if __name__ == "__main__":
    main()
