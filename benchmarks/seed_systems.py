"""Seed systems (issue 9): per model and exporter, channel groups, prunable groups, the parameter and MAC fractions
removed when every prunable group loses 30% / 50% of its units, and the measured CPU latency of the pruned model
over the original's. Writes benchmarks/results_seed_systems.md. Run: python -m benchmarks.seed_systems"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

import onnxprune as op
from benchmarks.measure import machine
from onnxprune import models
from onnxprune.analysis.stats import count_macs, count_params
from onnxprune.runtime.sessions import make_session
from tests.seed_systems.seed_check import ratio_plan

SEEDS = ("gcn", "gat", "dgcnn", "yolov8", "yolo11", "unet2d")
# Inputs latency is measured at (args of the spec's example_inputs): 1000-node graphs with 3000 edges, 16 clouds of
# 24 points (static), one 160x160 image, 8 latents of 16x16 (static).
LATENCY_INPUTS = {"gcn": (100,), "gat": (100,), "dgcnn": (16,), "yolov8": (1, 160), "yolo11": (1, 160),
                  "unet2d": (8,)}
RUNS, WARMUP = 60, 10


def latency_ratio(original, pruned, feed: dict) -> tuple[float, float, float]:
    """(original median ms, pruned median ms, median over rounds of pruned / original time): the two sessions
    (one intra-op thread each, so that they do not fight over the two cores) alternate run by run, the order
    swapped every round."""
    sessions = [make_session(m, "cpu", threads=1) for m in (original, pruned)]
    for _ in range(WARMUP):
        for session in sessions:
            session.run(None, feed)
    times = np.zeros((RUNS, 2))
    for k in range(RUNS):
        for j in (0, 1) if k % 2 == 0 else (1, 0):
            start = time.perf_counter()
            sessions[j].run(None, feed)
            times[k, j] = (time.perf_counter() - start) * 1e3
    return float(np.median(times[:, 0])), float(np.median(times[:, 1])), float(np.median(times[:, 1] / times[:, 0]))


def main() -> None:
    """Measure and write the table."""
    rows = ["| model | exporter | groups | prunable | params removed 0.3 | params removed 0.5 | MACs removed 0.5 | "
            "latency ms | latency 0.3 | latency 0.5 |", "|---|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in SEEDS:
            spec = models.ZOO[name]
            feed = {n: t.numpy() for n, t in zip(spec.input_names, spec.example_inputs(*LATENCY_INPUTS[name]))}
            for exporter in models.EXPORTERS:
                path = models.export(name, Path(tmp) / f"{name}.{exporter}.onnx", exporter, keep_bn=False)
                dg = op.analyse_model(path)
                params, macs = count_params(dg.graph), count_macs(dg.graph)
                cells, ratios = [], []
                for ratio in (0.3, 0.5):
                    result = op.apply_plan(dg, ratio_plan(dg, ratio))
                    cells.append(f"{1 - count_params(result.graph) / params:.1%}")
                    base_ms, _, paired = latency_ratio(path, result.model, feed)
                    ratios.append(f"{paired:.2f}x")
                cells.append(f"{1 - count_macs(result.graph) / macs:.1%}")
                rows.append(f"| {name} | {exporter} | {len(dg.channel_groups())} | {len(dg.prunable_groups())} | "
                            + " | ".join(cells) + f" | {base_ms:.2f} | " + " | ".join(ratios) + " |")
                print(rows[-1], flush=True)
    host = machine()
    Path(__file__).with_name("results_seed_systems.md").write_text(
        "# Seed systems: what prunes, and how much faster\n\nEvery prunable group loses 30% / 50% of its units "
        "(random units; the fractions depend only on counts). Narrow models from `models/` (graph_nets, detectors, "
        "diffusion), keep_bn=False exports, default analysis options (GAT: per-head hidden units; its heads prune "
        "with factor_policy 'leading'). Latency: onnxruntime CPU, one intra-op thread, original and pruned "
        f"alternating in one process, {RUNS} runs after {WARMUP} warm-up; 'latency ms' is the original's median, "
        "the ratios are the median over rounds of pruned / original time (below 1 is faster). Inputs: "
        + ", ".join(f"{k} {v}" for k, v in LATENCY_INPUTS.items()) + " (example_inputs arguments). Machine: "
        f"{host['cpu']} ({host['simd']}), {host['cores']} cores, load {host['load']}, onnxruntime "
        f"{host['onnxruntime']}; the machine was shared with other jobs, so ratios near 1 are within noise.\n\n"
        + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
