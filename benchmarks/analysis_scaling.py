"""Time graph loading and dependency analysis on the models/ zoo and on plain ResNets of growing depth, and print
time per node, to show the analysis grows linearly with the graph.

    python -m benchmarks.analysis_scaling [--depths 25 50 100 200 400] [--out benchmarks/results_analysis.md]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import onnxprune as op  # noqa: E402
from onnxprune import models
from onnxprune.analysis import analyse  # noqa: E402
from onnxprune.ir.loading import load  # noqa: E402


def measure(path: str, repeats: int = 3) -> dict:
    """Best-of-``repeats`` seconds for load and for analysis of one model."""
    best_load = best_analyse = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        loaded = load(path)
        mid = time.perf_counter()
        dg = analyse(loaded.graph, loaded.opset)
        end = time.perf_counter()
        best_load, best_analyse = min(best_load, mid - start), min(best_analyse, end - mid)
    nodes = len(loaded.graph.nodes)
    return {"nodes": nodes, "groups": len(dg.channel_groups()), "load_s": best_load, "analyse_s": best_analyse,
            "us_per_node": 1e6 * best_analyse / nodes}


def main() -> None:
    """Run the measurements and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="*", default=[25, 50, 100, 200, 400])
    parser.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models.names("cnn", "rnn"):
            path = models.export(name, os.path.join(tmp, f"{name}.onnx"), "torchscript", keep_bn=True)
            rows.append((name, measure(path)))
        for depth in args.depths:
            path = models.export(models.deep_spec(depth), os.path.join(tmp, f"deep{depth}.onnx"), "torchscript",
                                 keep_bn=True)
            rows.append((f"resnet_deep({depth})", measure(path, repeats=1 if depth >= 200 else 2)))
    lines = [f"onnxprune {op.__version__}, analysis timing (best of runs), TorchScript exports with BN kept", "",
             "| model | nodes | channel groups | load s | analyse s | analyse us/node |", "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {r['nodes']} | {r['groups']} | {r['load_s']:.3f} | {r['analyse_s']:.4f} | "
              f"{r['us_per_node']:.1f} |" for n, r in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
