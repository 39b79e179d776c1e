"""Analysis time of onnxprune against Torch-Pruning on the same architectures at real widths, side by side.

    python -m benchmarks.analysis_vs_torch_pruning [--models resnet50 densenet121 vit_b16] [--repeats 5]
                                                   [--dir /tmp/onnxprune_real] [--out benchmarks/results_vs_tp.md]

For each model (``models.real_width_spec``: torchvision's layouts, random weights, 224x224 images, batch 1) the
script exports a TorchScript ONNX file with BatchNormalization kept (``do_constant_folding=False``: the graph keeps
its BN nodes and, for ViT, the ``Transpose(W)`` of every Linear weight, as an unoptimised export does), then times
in this process, best of ``--repeats``, as CPU seconds of the process (torch on one thread; onnxprune's onnxruntime
sessions use their default threads, which CPU time counts too):

- onnxprune: ``analyse_model(path)`` and the channel-group listing (what ``onnxprune groups`` does, minus printing
  and interpreter start-up; everything from reading the file is included);
- Torch-Pruning: ``DependencyGraph().build_dependency(model, example_inputs)`` and
  ``list(get_all_groups())`` on the torch module the file was exported from.

Torch-Pruning traces one forward pass with autograd on; on this CPU that pass at 224x224 is most of its time, so
the table also gives its time less one such forward pass (timed alone, best of the same repeats): the graph work
proper. It also runs ``onnxprune groups FILE`` once in a child process and subtracts the time of a child that only
imports the CLI (``cli s`` column: wall seconds, start-up subtracted, one run, so noisier than the in-process figure).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.measure import emit
from onnxprune import models
from onnxprune.analysis import analyse_model


def best_of(repeats: int, fn) -> tuple[float, object]:
    """Smallest CPU time of this process (all its threads) over ``repeats`` calls of ``fn``, and the last result.
    CPU time, not wall time: on a shared machine the wall clock measures the neighbours as much as the code."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    return best, result


def onnxprune_groups(path: str):
    """What ``onnxprune groups`` computes: the dependency graph and its channel groups."""
    dg = analyse_model(path)
    return dg, dg.channel_groups()


def torch_pruning_groups(model: torch.nn.Module, example: tuple):
    """Torch-Pruning's graph build and group enumeration."""
    import torch_pruning as tp

    dg = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    return dg, list(dg.get_all_groups())


def forward_seconds(model: torch.nn.Module, example: tuple, repeats: int) -> float:
    """Best time of one forward pass with autograd on, as Torch-Pruning's trace runs it."""
    return best_of(repeats, lambda: model(*example))[0]


def cli_seconds(path: str) -> float:  # wall time: CPU time of a child is not this process's
    """Wall time of ``onnxprune groups path`` in a child minus that of a child that only imports the CLI (NaN when
    the CLI fails)."""
    def run(args: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start

    try:
        base = min(run([sys.executable, "-c", "import onnxprune.cli"]) for _ in range(2))
        return run([sys.executable, "-m", "onnxprune.cli", "groups", path]) - base
    except subprocess.CalledProcessError:
        return float("nan")


def main() -> None:
    """Export, time both sides, print (and optionally write) a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["resnet50", "densenet121", "vit_b16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default="/tmp/onnxprune_real")
    parser.add_argument("--out", default=None)
    parser.add_argument("--label", default="", help="a word for the code measured (before/after), in the table")
    args = parser.parse_args()
    torch.set_num_threads(1)  # CPU time of one thread: the same work measure on both sides
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        spec = models.real_width_spec(name)
        path = os.path.join(args.dir, f"{spec.name}.torchscript.bn.onnx")
        if not os.path.exists(path):
            models.export(spec, path, "torchscript", keep_bn=True)
        model, example = spec.build(), spec.example_inputs()
        ours, (dg, groups) = best_of(args.repeats, lambda p=path: onnxprune_groups(p))
        theirs, (_, tp_groups) = best_of(args.repeats, lambda m=model, e=example: torch_pruning_groups(m, e))
        forward = forward_seconds(model, example, args.repeats)
        cli = cli_seconds(path)
        rows.append((name, os.path.getsize(path) / 1e6, len(dg.graph.nodes), len(groups), ours, cli, len(tp_groups),
                     theirs, forward))
        print(rows[-1], flush=True)
    import torch_pruning as tp

    import onnxprune

    lines = [f"onnxprune {onnxprune.__version__} {args.label}".rstrip() + f" vs Torch-Pruning {tp.__version__}, "
             f"torch {torch.__version__}, {os.cpu_count()} CPU cores; CPU seconds, best of {args.repeats} runs in one "
             "process",
             "", "| model | file MB | ONNX nodes | onnxprune groups | onnxprune s | cli s | TP groups | TP s | "
             "TP s less its forward | onnxprune / TP | onnxprune / (TP less forward) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {n} | {mb:.0f} | {nodes} | {g} | {ours:.3f} | {cli:.2f} | {tg} | {theirs:.3f} | {theirs - fw:.3f} | "
              f"{ours / theirs:.2f} | {ours / max(theirs - fw, 1e-9):.2f} |"
              for n, mb, nodes, g, ours, cli, tg, theirs, fw in rows]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
