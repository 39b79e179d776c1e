"""GPU check (issue 13 part 7): the CUDA path end to end in a few minutes on a machine with an NVIDIA GPU, its
figures appended to benchmarks/results_cuda.md. Run it whenever such a machine is at hand:

    bash benchmarks/gpu_check.sh [--models resnet50 bert_base] [--out benchmarks/results_cuda.md]

For ResNet-50 (torchvision layout, 224x224) and a BERT-base-like encoder (hidden 768, 12 heads, MLP 3072, 12 layers,
sequence 128), random weights (latency only, no accuracy claimed):
1. the machine: nvidia-smi's GPU, driver and memory; onnxruntime's providers; whether CUDA and TensorRT start;
2. prune at 0.5 validated on CUDA (what ``onnxprune prune --provider cuda`` does): the pruned model against the
   mask oracle, both run by CUDAExecutionProvider;
3. latency of original and pruned alternating in one process on CUDA, inputs and outputs on the device (IO
   binding), at batch 1 and 32;
4. the same on onnxruntime's TensorRT execution provider where it works (fp32; ``--trt-batches``, default 32
   only: every engine build takes tens of seconds);
5. channel multiples: ratio 0.3 (where kept counts are not multiples of 8 by themselves; 0.5 of ResNet-50's widths
   always is) pruned with ``--round-to`` 1, 8 and 16, validated and timed on CUDA at batch 32.
A step that fails is recorded as FAILED with its error and the check goes on; the exit status is 1 then.

Without a GPU (no nvidia-smi, or CUDAExecutionProvider does not start) it exits with status 2 and says why.
``ONNXPRUNE_GPU_CHECK_CPU=1`` (or ``--cpu``) runs the same steps on the CPU provider (standing in for CUDA and
TensorRT) with small sizes (ResNet-50 at 32x32, a one-layer encoder at sequence 16, batches 1 and 2) and writes
no file unless ``--out`` is given: a smoke test that the script works, not GPU figures
(tests/runtime/test_gpu_check.py runs it).
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
import traceback

import onnxruntime as ort

from benchmarks.measure import emit, model_stats
from benchmarks.runtimes import SUBJECTS, export_bert_base, export_resnet50, prune_subject, runtime_label
from onnxprune.pipeline import PruneOptions, prune_file
from onnxprune.runtime import cuda_works, tensorrt_works
from onnxprune.validation.bench import benchmark

CPU_ENV = "ONNXPRUNE_GPU_CHECK_CPU"
HERE = os.path.dirname(os.path.abspath(__file__))


def nvidia_smi() -> str | None:
    """'name, driver, memory' of each GPU nvidia-smi lists (joined by '; '), or None without a working nvidia-smi."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = "; ".join(line.strip() for line in done.stdout.splitlines() if line.strip())
    return text if done.returncode == 0 and text else None


def gpu_missing() -> str | None:
    """Why the CUDA path cannot run here (None when it can)."""
    gpus = nvidia_smi()
    if gpus is None:
        return "no NVIDIA GPU here: nvidia-smi is missing or fails"
    if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels (e.g. torch's), when present
        try:
            ort.preload_dlls()
        except Exception:
            pass
    if not cuda_works():
        return (f"nvidia-smi sees {gpus}, but onnxruntime's CUDAExecutionProvider does not start (providers: "
                f"{', '.join(ort.get_available_providers())}; onnxruntime-gpu needs the CUDA 12 and cuDNN 9 "
                "libraries it was built for)")
    return None


class Check:
    """The steps' results: markdown rows and failures, each step run through ``step``."""

    def __init__(self) -> None:
        self.validation: list[str] = []
        self.timing: list[str] = []
        self.rounding: list[str] = []
        self.failures: list[str] = []

    def step(self, what: str, func, *args, **kwargs):
        """Run one step; on an exception record '<what>: FAILED: <error>' and return None."""
        started = time.perf_counter()
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            message = " ".join(str(exc).split())[:300] or exc.__class__.__name__
            self.failures.append(f"{what}: FAILED: {exc.__class__.__name__}: {message}")
            print(f"{what}: FAILED ({time.perf_counter() - started:.1f} s)", flush=True)
            traceback.print_exc()
            return None
        print(f"{what}: done ({time.perf_counter() - started:.1f} s)", flush=True)
        return result


def run_check(args, cpu: bool) -> tuple[str, bool]:
    """All steps; (the markdown block, whether every step passed)."""
    cuda, trt = ("cpu", "cpu") if cpu else ("cuda", "tensorrt")
    trt_ok = cpu or tensorrt_works()
    check, start = Check(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            label = SUBJECTS[name].label
            source = check.step(f"{name}: export", _export, name, tmp, args)
            if source is None:
                continue
            output = os.path.join(tmp, f"{name}.pruned.onnx")
            done = check.step(f"{name}: prune 0.5 validated on {cuda}", prune_subject, name, source, output,
                              0.5, cuda)
            if done is None:
                continue
            report, _ = done
            check.validation.append(_validation_row(label, 0.5, "-", report, source, output))
            if not report["validation"].get("passed"):
                check.failures.append(f"{name}: validation on {cuda} FAILED: {report['validation']}")
            dims = {"batch": 1, "seq": args.seq}
            timed = [(cuda, b) for b in args.batches] + ([(trt, b) for b in args.trt_batches] if trt_ok else [])
            for k, (provider, batch) in enumerate(timed):
                stand_in = " (CPU standing in for TensorRT)" if cpu and k >= len(args.batches) else ""
                timing = check.step(f"{name}: bench {provider} batch {batch}{stand_in}", benchmark,
                                    [source, output], provider=provider, batch=batch, runs=args.runs, warmup=3,
                                    dims={**dims, "batch": batch}, min_seconds=args.min_seconds)
                if timing is not None:
                    check.timing.append(_timing_row(label, timing, stand_in))
            if not trt_ok:
                check.timing.append(f"| {label} | - | onnxruntime Tensorrt | not available here (TensorRT's "
                                    "libraries missing: pip install tensorrt) | | | | |")
            for round_to in args.round_to:
                rounded = os.path.join(tmp, f"{name}.r{round_to}.onnx")
                done = check.step(f"{name}: prune {args.round_ratio} round_to {round_to}", _prune_rounded, name,
                                  source, rounded, args.round_ratio, cuda, round_to)
                if done is None:
                    continue
                check.validation.append(_validation_row(label, args.round_ratio, round_to, done, source, rounded))
                timing = check.step(f"{name}: bench round_to {round_to}", benchmark, [source, rounded],
                                    provider=cuda, batch=args.round_batch, runs=args.runs, warmup=3,
                                    dims={**dims, "batch": args.round_batch}, min_seconds=args.min_seconds)
                if timing is not None:
                    check.rounding.append(_timing_row(f"{label}, ratio {args.round_ratio}, round_to {round_to}",
                                                      timing, ""))
    return _format(args, cpu, check, time.perf_counter() - start), not check.failures


def _export(name: str, out_dir: str, args) -> str:
    if name == "resnet50":
        return export_resnet50(out_dir, args.size)
    return export_bert_base(out_dir, args.layers)


def _prune_rounded(name: str, source: str, output: str, ratio: float, provider: str, round_to: int) -> dict:
    options = PruneOptions(ratio=ratio, provider=provider, round_to=round_to if round_to > 1 else None,
                           **SUBJECTS[name].options)
    return prune_file(source, output, options)


def _validation_row(label: str, ratio: float, round_to, report: dict, source: str, output: str) -> str:
    v = report["validation"]
    verdict = "PASSED" if v.get("passed") else "FAILED"
    (macs0, _), (macs1, _) = model_stats(source), model_stats(output)
    reference = "mask oracle" if v.get("oracle") else "original (drift)"
    return (f"| {label} | {ratio} | {round_to} | {macs1 / macs0:.3f} | {v.get('provider')} | {verdict} vs "
            f"{reference}, max abs diff {v.get('max_abs_diff', float('nan')):.1e} |")


def _timing_row(label: str, report, note: str) -> str:
    m0, m1 = report.models[0].median_ms, report.models[1].median_ms
    binding = "yes" if report.provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "no (CPU)"
    return (f"| {label} | {report.batch} | {runtime_label(report.runtime, report.provider)}{note} | {binding} | "
            f"{m0:.3f} | {m1:.3f} | {m0 / m1:.2f}x | {report.runs} |")


def _format(args, cpu: bool, check: Check, seconds: float) -> str:
    today = datetime.date.today().isoformat()
    where = ("CPU DRY RUN (ONNXPRUNE_GPU_CHECK_CPU=1): the CPU provider stands in for CUDA and TensorRT; not GPU "
             "figures" if cpu else f"GPU check on {nvidia_smi()}")
    lines = [f"## {today}: {where}", "",
             f"- command: `{' '.join([*([f'{CPU_ENV}=1'] if cpu else []), 'bash benchmarks/gpu_check.sh', *args.argv])}"
             "`",
             f"- onnxruntime {ort.__version__}, providers {', '.join(ort.get_available_providers())}; CUDA "
             f"{'works' if cuda_works() else 'does not start'}, TensorRT "
             f"{'works' if tensorrt_works() else 'does not start'}; {os.cpu_count()} CPU cores; total {seconds:.0f} s",
             f"- models: ResNet-50 at {args.size}x{args.size} (BN folded); BERT-base-like encoder, {args.layers} "
             f"layer(s), sequence {args.seq}; random weights. Pruning: "
             + "; ".join(f"{SUBJECTS[n].label}: {SUBJECTS[n].pruning}" for n in args.models),
             "- validation runs on the provider shown (prune's own: `onnxprune prune --provider cuda`); timing: "
             f"original and pruned alternating, at least {args.min_seconds:g} s of runs after 3 warm-up, median; "
             "IO binding: inputs copied to the device once, outputs left there", "",
             "| model | ratio | round_to | MACs ratio | validated on | validation |", "|---|---|---|---|---|---|",
             *check.validation, "",
             "| model | batch | provider | IO binding | original ms | pruned ms | speedup | runs |",
             "|---|---|---|---|---|---|---|---|", *check.timing]
    if check.rounding:
        lines += ["", f"Channel multiples (ratio {args.round_ratio}; the encoder's heads stay at 0.5; batch "
                  f"{args.round_batch}):", "",
                  "| model | batch | provider | IO binding | original ms | pruned ms | speedup | runs |",
                  "|---|---|---|---|---|---|---|---|", *check.rounding]
    if check.failures:
        lines += ["", "Failures:", "", *[f"- {f}" for f in check.failures]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse options, check for a GPU (or CPU mode), run every step, write the results; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help=f"the CPU dry run (also {CPU_ENV}=1)")
    parser.add_argument("--models", nargs="+", default=list(SUBJECTS), choices=list(SUBJECTS))
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="default 1 32 (CPU mode: 1 2)")
    parser.add_argument("--trt-batches", type=int, nargs="*", default=None, help="default 32 (CPU mode: 2)")
    parser.add_argument("--round-to", type=int, nargs="*", default=[1, 8, 16])
    parser.add_argument("--round-ratio", type=float, default=0.3)
    parser.add_argument("--round-batch", type=int, default=None, help="default 32 (CPU mode: 2)")
    parser.add_argument("--size", type=int, default=None, help="ResNet-50 image size (default 224; CPU mode 32)")
    parser.add_argument("--layers", type=int, default=None, help="encoder layers (default 12; CPU mode 1)")
    parser.add_argument("--seq", type=int, default=None, help="sequence length (default 128; CPU mode 16)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--min-seconds", type=float, default=None, help="default 2 (CPU mode: 0)")
    parser.add_argument("--out", default=None, help="default benchmarks/results_cuda.md (CPU mode: no file)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    cpu = args.cpu or os.environ.get(CPU_ENV, "") not in ("", "0")
    defaults = ({"batches": [1, 2], "trt_batches": [2], "round_batch": 2, "size": 32, "layers": 1, "seq": 16,
                 "min_seconds": 0.0} if cpu else
                {"batches": [1, 32], "trt_batches": [32], "round_batch": 32, "size": 224, "layers": 12, "seq": 128,
                 "min_seconds": 2.0, "out": os.path.join(HERE, "results_cuda.md")})
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if cpu:
        args.runs = min(args.runs, 3)
    else:
        why = gpu_missing()
        if why:
            print(f"gpu_check: {why}; nothing measured. {CPU_ENV}=1 runs the same steps on the CPU provider as a "
                  "smoke test.", file=sys.stderr)
            return 2
    text, passed = run_check(args, cpu)
    emit(text, args.out)
    if args.out:
        print(f"appended to {args.out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
