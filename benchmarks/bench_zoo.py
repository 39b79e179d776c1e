"""Prune every models/ zoo model (TorchScript export, BatchNormalization folded as in deployed models) at several
ratios with L2 importance, and measure what it buys: MACs and params ratios, and the onnxruntime latency ratio of
pruned to original, both models timed alternately in one process (CPU, and CUDA where it works). Then a
ResNet-50-like model at ratio 0.5: MACs reduction against measured CPU speedup at batch 1 and 8.

    python -m benchmarks.bench_zoo [--quick] [--ratios 0.3 0.5 0.7] [--models NAME ...] [--threads 2]
                                   [--skip-resnet50] [--out-dir benchmarks]

Writes OUT_DIR/results_cpu.md (and results_cuda.md where CUDA works). Timings on a shared machine are noisy: the
machine's load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import onnxprune as op  # noqa: E402
from benchmarks.measure import machine, prune_and_measure
from onnxprune import models
from onnxprune.runtime import cuda_works  # noqa: E402


def _ratio(pair: tuple[int, int]) -> str:
    return f"{pair[1] / pair[0]:.3f}" if pair[0] else "n/a"


def _share(report) -> str:
    return "n/a" if report.other_load is None else f"{report.other_load:.2f}"


def _oracle(row: dict) -> str:
    if row["oracle"]:
        return "pass"
    return "FAIL" if row["exact"] else f"drift {row['max_abs_diff']:.1e} (not exact)"


def zoo_table(rows: list[tuple[str, dict]], provider: str) -> list[str]:
    """Markdown table of the zoo results for ``provider`` ('cpu' or 'cuda')."""
    lines = ["| model | ratio | groups pruned | MACs ratio | params ratio | oracle | original ms | pruned ms | "
             "latency ratio | speedup | other load |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows:
        report = row[provider]
        m0, m1 = report.models[0].median_ms, report.models[1].median_ms
        lines.append(f"| {name} | {row['ratio']} | {row['pruned']}/{row['groups']} | {_ratio(row['macs'])} | "
                     f"{_ratio(row['params'])} | {_oracle(row)} | {m0:.3f} | {m1:.3f} | {m1 / m0:.3f} | "
                     f"{m0 / m1:.2f}x | {_share(report)} |")
    return lines


def alignment_table(rows: list[tuple[str, int, dict]]) -> list[str]:
    """Markdown table: CPU latency ratio of plain L2 pruning against the same with kept channel counts rounded."""
    lines = ["| model | ratio | round-to | MACs ratio | original ms | pruned ms | latency ratio |",
             "|---|---|---|---|---|---|---|"]
    for name, round_to, row in rows:
        m0, m1 = row["cpu"].models[0].median_ms, row["cpu"].models[1].median_ms
        lines.append(f"| {name} | {row['ratio']} | {round_to} | {_ratio(row['macs'])} | {m0:.3f} | {m1:.3f} | "
                     f"{m1 / m0:.3f} |")
    return lines


ZOO_NOTE = ("The zoo models are deliberately tiny (widths 8-48, 32x32 images, 12 tokens): a run takes 0.05-3 ms, "
            "most of it per-node overhead that pruning does not shrink, so their latency ratio stays well above the "
            "MACs ratio. The ResNet-50-like case below is the compute-bound one.")

ALIGNMENT_NOTE = [
    "onnxruntime's CPU provider runs a Conv in its blocked NCHWc layout (faster kernels, Conv+Add+Relu fused) "
    "only when the layout fits. Measured with onnxruntime 1.31 on this CPU: a plain Conv takes any channel count, "
    "a depthwise Conv needs a multiple of 4 channels, a grouped Conv a multiple of the block (16 with AVX-512, 8 "
    "with AVX2) channels per group. Pruning a depthwise group to, say, 11 or 17 channels drops those Convs back to "
    "NCHW with ReorderInput/ReorderOutput nodes around them, and the pruned model can be slower than the original "
    "although it has fewer MACs. Keeping channel counts at multiples of 8 (`--round-to 8`) avoids it:", ""]


def header(args, info: dict, provider: str) -> list[str]:
    """The machine and settings the figures were measured with."""
    threads = args.threads or "onnxruntime default"
    return [f"# onnxprune pruning benchmark ({provider})", "",
            f"- machine: {info['cpu']} ({info['simd']}), {info['cores']} cores; load average at start "
            f"{info['load'][0]}",
            f"- onnxruntime {info['onnxruntime']}, onnx {info['onnx']}, onnxprune {info['onnxprune']}; "
            f"CUDA {'works' if info['cuda'] else 'not available (CPU only)'}",
            f"- zoo: TorchScript export, BN folded; batch {args.batch}, at least {args.runs} runs and "
            f"{args.min_seconds:g} s after {args.warmup} warm-up, intra-op threads {threads}; latency = median; "
            "original and pruned alternate run by run",
            "- MACs/params ratio = pruned / original; latency ratio = pruned median / original median; "
            "oracle = pruned model vs original with the same channels zeroed; other load = share of the machine's "
            "CPU time other processes took while timing (above ~0.1 the timings are inflated and noisy)",
            "- while two models alternate, onnxruntime's intra-op thread spinning is off: the threads of the session "
            "that just ran would otherwise busy-wait on the cores the next one needs (on 2 cores that doubled the "
            "ResNet-50-like latency at 2 threads and made the ratio swing between 3.0x and 3.8x)", ""]


def main() -> None:
    """Run the benchmark and write the markdown results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", type=float, nargs="*", default=[0.3, 0.5, 0.7])
    parser.add_argument("--models", nargs="*", default=None, help="zoo model names (default: all)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--min-seconds", type=float, default=1.0, help="time each zoo pair at least this long")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (0 = onnxruntime default)")
    parser.add_argument("--quick", action="store_true", help="fewer runs, ResNet-50-like at 160x160")
    parser.add_argument("--skip-zoo", action="store_true")
    parser.add_argument("--skip-resnet50", action="store_true")
    parser.add_argument("--size", type=int, default=224, help="ResNet-50-like input size")
    parser.add_argument("--r50-runs", type=int, default=20, help="ResNet-50-like timed runs at batch 1")
    parser.add_argument("--align-models", nargs="*", default=["mobilenet_v2", "mobilenet_v3", "shufflenet_v2"],
                        help="models re-run with kept channel counts rounded to --align-round")
    parser.add_argument("--align-round", type=int, default=8)
    parser.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args()
    if args.quick:
        args.runs, args.warmup, args.r50_runs, args.size, args.min_seconds = 30, 3, 8, 160, 0.2
    start = time.perf_counter()
    info = machine()
    cuda = cuda_works()
    rows: list[tuple[str, dict]] = []
    aligned: list[tuple[str, int, dict]] = []
    r50_lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ([] if args.skip_zoo else args.models or models.names("cnn", "rnn")):
            path = models.export(name, os.path.join(tmp, f"{name}.onnx"), "torchscript", keep_bn=False)
            dg = op.analyse_model(path)
            for ratio in args.ratios:
                out = os.path.join(tmp, f"{name}.{ratio}.onnx")
                row = prune_and_measure(path, ratio, out, args.batch, args.runs, args.warmup, args.threads, dg,
                                        cuda, min_seconds=args.min_seconds)
                rows.append((name, row))
                print(zoo_table([(name, row)], "cpu")[-1], flush=True)
                if name in args.align_models:
                    aligned.append((name, 1, row))
                    row = prune_and_measure(path, ratio, out, args.batch, args.runs, args.warmup, args.threads, dg,
                                            False, args.align_round, args.min_seconds)
                    aligned.append((name, args.align_round, row))
        if not args.skip_resnet50:
            from resnet50_like import run_case

            configs = [(1, args.threads), (8, args.threads), (1, 1), (8, 1)]
            r50_lines, _ = run_case(tmp, args.size, 0.5, list(dict.fromkeys(configs)), args.r50_runs, 2)
    elapsed = time.perf_counter() - start
    for provider in ("cpu", "cuda") if cuda else ("cpu",):
        lines = header(args, info, provider)
        if rows:
            lines += ["## models/ zoo", "", ZOO_NOTE, ""] + zoo_table(rows, provider) + [""]
        if aligned and provider == "cpu":
            lines += ["## Channel alignment (CPU)", ""] + ALIGNMENT_NOTE + alignment_table(aligned) + [""]
        if r50_lines and provider == "cpu":
            lines += ["## ResNet-50-like", ""] + r50_lines + [""]
        end_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        lines.append(f"Total {elapsed:.0f} s; load average at end {end_load:.2f}.")
        text = "\n".join(lines) + "\n"
        print(text)
        with open(os.path.join(args.out_dir, f"results_{provider}.md"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
