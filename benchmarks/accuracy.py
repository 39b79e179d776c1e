"""Accuracy kept by reconstruction on models trained in seconds (models/trained.py), and what it costs.

For every trained model: the original test accuracy; pruned (l2, one ratio for every group) at 0.3 and 0.5 without
and with reconstruction (ridge, default options, calibration = 320 training samples of which 20% are held out), and
with reconstruction after sensitivity allocation at the same MACs; what ``--min-agreement 0.99`` reaches;
the MACs ratio; the measured latency ratio (pruned / original, onnxruntime CPU, paired runs); reconstruction time.
With ``--resnet50``: reconstruction time and peak memory (tracemalloc: numpy and Python allocations, not
onnxruntime's arena) on ResNet-50 at real widths (224x224, random weights) with 256 random calibration samples.

    python -m benchmarks.accuracy [--models NAME ...] [--resnet50] [--out benchmarks/results_accuracy.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import tracemalloc
import warnings

import numpy as np
from onnxprune.models import trained

import onnxprune as op
from onnxprune import models
from onnxprune.analysis.stats import count_macs
from onnxprune.data import prepare_calibration
from onnxprune.reconstruct import ReconstructOptions, reconstruct
from onnxprune.search.metrics import AccuracyTarget
from onnxprune.search.planning import plan_for_target, plan_pruning
from onnxprune.selection.select import SelectionOptions
from onnxprune.validation.bench import benchmark
from onnxprune.validation.comparison import compare

RATIOS = (0.3, 0.5)


def measure_model(name: str, out_dir: str) -> list[dict]:
    """One row per ratio for trained model ``name``."""
    started = time.perf_counter()
    model = trained.train(name, out_dir)
    train_s = time.perf_counter() - started
    dg = op.analyse_model(model.path)
    rows = []
    for ratio in RATIOS:
        result = op.apply_plan(dg, plan_pruning(dg, "l2", SelectionOptions(ratio=ratio)).groups)
        rec = reconstruct(dg, result, {model.input_name: model.calib})
        pruned_path = os.path.join(out_dir, f"{name}_{ratio}.onnx")
        rec.result.save(pruned_path)
        timing = benchmark([model.path, pruned_path], provider="cpu", batch=64, runs=100, warmup=10,
                           min_seconds=2.0)
        allocated = _sensitivity_refit(dg, model, ratio)
        rows.append({"model": name, "ratio": ratio, "train_s": train_s, "original": model.accuracy,
                     "sensitivity": allocated["accuracy"], "sensitivity_macs": allocated["macs"],
                     "pruned": trained.accuracy(result.exported, model.test_x, model.test_y, model.input_name),
                     "reconstructed": trained.accuracy(pruned_path, model.test_x, model.test_y, model.input_name),
                     "macs": count_macs(rec.result.graph) / count_macs(dg.graph),
                     "latency": 1.0 / timing.paired_speedup, "other_load": timing.other_load,
                     "seconds": rec.seconds, "layers": len(rec.layers), "notes": len(rec.notes),
                     "test_samples": len(model.test_y)})
        print(_row(rows[-1]), flush=True)
    target = _min_agreement(dg, model, 0.99)
    print(f"min-agreement 0.99 on {name}: {target}", flush=True)
    rows[-1]["target"] = target
    return rows


def _calibration(model):
    return prepare_calibration(model.path, {model.input_name: model.calib}, holdout=0.2)


def _sensitivity_refit(dg, model, ratio: float) -> dict:
    """Sensitivity allocation for the MACs the uniform ratio leaves, refit candidates, then the final refit."""
    calibration = _calibration(model)
    plan = plan_pruning(dg, "l2", SelectionOptions(ratio=ratio), calibration, allocate="sensitivity",
                        reconstruct=ReconstructOptions())
    rec = reconstruct(dg, op.apply_plan(dg, plan.groups), calibration)
    return {"accuracy": trained.accuracy(rec.result.exported, model.test_x, model.test_y, model.input_name),
            "macs": count_macs(rec.result.graph) / count_macs(dg.graph)}


def _min_agreement(dg, model, agreement: float) -> dict:
    """The most uniform pruning (with reconstruction) whose held-out top-1 agreement stays >= ``agreement``."""
    plan, result = plan_for_target(dg, AccuracyTarget(min_agreement=agreement), "l2", SelectionOptions(),
                                   _calibration(model), reconstruct=ReconstructOptions())
    if not result.reached or result.pruned is None:
        return {"reached": False, "message": result.message}
    return {"reached": True, "ratio": plan.ratio, "macs": count_macs(result.pruned.graph) / count_macs(dg.graph),
            "accuracy": trained.accuracy(result.pruned.exported, model.test_x, model.test_y, model.input_name)}


def _row(r: dict) -> str:
    return (f"| {r['model']} | {r['ratio']} | {r['original']:.2%} | {r['pruned']:.2%} | {r['reconstructed']:.2%} | "
            f"{r['sensitivity']:.2%} ({r['sensitivity_macs']:.2f}) | "
            f"{r['macs']:.2f} | {r['latency']:.2f} | {r['seconds']:.1f} | {r['layers']} | {r['notes']} |")


def _target_row(r: dict) -> str:
    t = r["target"]
    if not t["reached"]:
        return f"| {r['model']} | {r['original']:.2%} | not reached: {t['message']} | | |"
    return f"| {r['model']} | {r['original']:.2%} | {t['ratio']:.3f} | {t['macs']:.2f} | {t['accuracy']:.2%} |"


def measure_resnet50(out_dir: str, samples: int = 256) -> dict:
    """Reconstruction time and peak Python/numpy memory on ResNet-50 (224) at ratio 0.3 with random samples."""
    path = models.export(models.resnet50_spec(224), os.path.join(out_dir, "resnet50.onnx"), keep_bn=False)
    dg = op.analyse_model(path)
    result = op.apply_plan(dg, plan_pruning(dg, "l2", SelectionOptions(ratio=0.3)).groups)
    x = np.random.default_rng(0).standard_normal((samples, 3, 224, 224)).astype(np.float32)
    tracemalloc.start()
    started = time.perf_counter()
    rec = reconstruct(dg, result, {"x": x}, ReconstructOptions(batch_size=16))
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"samples": samples, "fit": rec.calibration.fit_samples, "layers": len(rec.layers), "seconds": seconds,
            "peak_mb": peak / 2**20, "data_mb": x.nbytes / 2**20,
            "levels": len({f.level for f in rec.layers}),
            "before": _figures(compare(path, result.exported, rec.calibration.holdout, oracle=False)),
            "after": _figures(compare(path, rec.result.exported, rec.calibration.holdout, oracle=False))}


def _figures(found) -> dict:
    return {"top1_agreement": found.top1_agreement, "cosine": found.cosine, "mean_abs_diff": found.mean_abs_diff}


READING = ("Notes: 'notes' counts consumers of pruned channels that were not refit (the transformer's LayerNorms "
           "over the pruned hidden axis and its attention score/value MatMuls); their loss is left to the next "
           "refit layer. The LSTM's removed hidden units also leave its own recurrence (R and the gates' state), "
           "which is not refit (only the next LSTM's input weights W and the classifier are), hence its larger drop. "
           "Latency ratios of these tiny models at batch 64 include onnxruntime's per-node overhead, which pruning "
           "does not shrink, and the machine was shared while timing.")
HEADER = ("| model | ratio | original | pruned | reconstructed | reconstructed + sensitivity (MACs ratio) | MACs ratio "
          "| latency ratio | refit s | layers refit | notes |\n|---|---|---|---|---|---|---|---|---|---|---|")
TARGET_HEADER = ("| model | original | ratio reached | MACs ratio | test accuracy |\n|---|---|---|---|---|")


def main() -> None:
    """Run the measurements and write the markdown results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(trained.RECIPES))
    parser.add_argument("--resnet50", action="store_true")
    parser.add_argument("--resnet50-samples", type=int, default=256)
    parser.add_argument("--out", default=None)
    parser.add_argument("--append", action="store_true", help="append to --out instead of writing it anew")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    out_dir = tempfile.mkdtemp(prefix="onnxprune-accuracy-")
    print(HEADER, flush=True)
    rows = [row for name in args.models for row in measure_model(name, out_dir)]
    big = measure_resnet50(out_dir, args.resnet50_samples) if args.resnet50 else None
    if big:
        print(big, flush=True)
    if args.out:
        load = max([r["other_load"] or 0.0 for r in rows] + [0.0])
        title = f"# Accuracy kept by reconstruction ({platform.machine()}, {os.cpu_count()} CPUs, onnxruntime CPU)"
        lines = [] if args.append else [title,
                 "", f"`python -m benchmarks.accuracy --out {args.out}`", "",
                 "Test accuracy on each task's test split (digits: 597 images; synthetic tasks: 600 samples); "
                 "l2, one ratio for every group; reconstruction: ridge (alpha 1e-3), 256 calibration samples "
                 "from the training split fit, 64 held out. Latency ratio = pruned / original, batch 64, paired "
                 f"runs (other processes used up to {load:.0%} of the CPU while timing: latencies are noisy).", "",
                 HEADER, *[_row(r) for r in rows], "",
                 "Reconstructed + sensitivity: per-group ratios from each group's measured sensitivity (refit "
                 "candidates), for the MACs the uniform ratio leaves; its own MACs ratio in brackets.", "",
                 "## `--min-agreement 0.99` with reconstruction (held-out calibration data)", "", TARGET_HEADER,
                 *[_target_row(r) for r in rows if "target" in r], "", READING, ""]
        if big:
            command = f"python -m benchmarks.accuracy --models --resnet50 --resnet50-samples {big['samples']}"
            lines += ["## ResNet-50 at real widths (224x224, random weights, ratio 0.3)", "",
                      f"`{command} --out {args.out} --append`", "",
                      f"{big['samples']} random calibration samples ({big['fit']} fit), {big['layers']} layers refit "
                      f"in {big['levels']} levels: {big['seconds']:.0f} s, peak numpy/Python memory "
                      f"{big['peak_mb']:.0f} MiB (the calibration array alone is {big['data_mb']:.0f} MiB; "
                      "onnxruntime's own memory is not counted).", ""]
        with open(args.out, "a" if args.append else "w") as f:
            f.write("\n".join(lines))


if __name__ == "__main__":
    main()
