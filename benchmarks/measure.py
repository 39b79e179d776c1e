"""Shared pieces of the pruning benchmarks: the machine description, an L2 plan builder, and one prune-and-measure
step (MACs, params, oracle check, latency of original and pruned measured alternately in one process)."""

from __future__ import annotations

import os
import platform

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort

import onnxprune as op
from onnxprune.analysis.stats import count_macs, count_params
from onnxprune.errors import PruneError
from onnxprune.ir.loading import load
from onnxprune.runtime import cuda_works
from onnxprune.validation.bench import benchmark
from onnxprune.validation.validate import validate


def machine() -> dict:
    """CPU model and vector extension, core count, versions, load average: what the timings depend on."""
    cpu, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        flags = set(next(line.split(":", 1)[1] for line in lines if line.startswith("flags")).split())
    except (OSError, StopIteration):
        pass
    simd = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2")
    load_avg = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu": cpu, "simd": simd, "cores": os.cpu_count(), "onnxruntime": ort.__version__, "onnx": onnx.__version__,
            "onnxprune": op.__version__, "cuda": cuda_works(), "load": tuple(round(x, 2) for x in load_avg)}


def _l2_scores(group) -> np.ndarray | None:
    """L2 norm of each unit's slice of the group's root weight (or of its first float constant member)."""
    axes = [group.root] + [ax for ax in group.constants() if ax != group.root]
    for axis in axes:
        tensor = group.depgraph.tensors.get(axis.tensor)
        if isinstance(tensor, gs.Constant) and np.issubdtype(np.dtype(tensor.dtype), np.floating):
            values = np.moveaxis(np.asarray(tensor.values, dtype=np.float64), axis.axis, 0)
            per_index = np.sqrt(np.sum(values.reshape(values.shape[0], -1) ** 2, axis=1))
            return np.sqrt(np.sum(per_index[group.members[axis]] ** 2, axis=1))
    return None


def _count(size: int, ratio: float, round_to: int) -> int:
    """Units to remove: round(ratio * size), at most size - 1; with round_to > 1 the kept count is rounded to the
    nearest multiple of round_to (at least round_to), nothing removed when that keeps every unit."""
    count = min(int(round(ratio * size)), size - 1)
    if round_to > 1:
        kept = max(round_to, int(round((size - count) / round_to)) * round_to)
        count = max(0, size - kept)
    return count


def l2_plan(dg, ratio: float, round_to: int = 1) -> dict[int, list[int]]:
    """For each prunable group, the round(ratio * size) units of smallest L2 norm (at most size - 1, kept counts
    rounded to multiples of ``round_to``); when that would empty an axis shared with groups already planned, the
    count is halved until the plan is valid."""
    plan: dict[int, list[int]] = {}
    for group in dg.prunable_groups():
        scores = _l2_scores(group)
        count = _count(group.size, ratio, round_to)
        if scores is None or count <= 0:
            continue
        order = np.argsort(scores, kind="stable")
        while count > 0:
            trial = {**plan, group.id: sorted(order[:count].tolist())}
            try:
                dg.resolve(trial)
            except PruneError:
                count //= 2
                continue
            plan = trial
            break
    return plan


def make_plan(dg, ratio: float, round_to: int = 1) -> tuple[dict[int, list[int]], str]:
    """The plan of ``onnxprune.search.planning.plan_pruning`` (criterion l2, local ratio) when that module exists, else
    ``l2_plan``; returns (plan, which builder was used)."""
    try:
        from onnxprune.search import plan_pruning
        from onnxprune.selection import SelectionOptions
    except ImportError:
        return l2_plan(dg, ratio, round_to), "benchmarks l2_plan"
    plan = plan_pruning(dg, "l2", SelectionOptions(ratio=ratio, round_to=round_to if round_to > 1 else None))
    return {int(g): sorted(int(u) for u in units) for g, units in plan.groups.items() if units}, "plan_pruning l2"


def model_stats(model) -> tuple[int, int]:
    """(MACs per sample, params) of a path or ModelProto."""
    graph = load(model).graph
    return count_macs(graph), count_params(graph)


def prune_and_measure(path: str, ratio: float, out_path: str, batch: int, runs: int, warmup: int, threads: int,
                      dg=None, cuda: bool | None = None, round_to: int = 1, min_seconds: float = 1.0) -> dict:
    """Prune ``path`` at ``ratio`` (written to ``out_path``), check it against the mask oracle, and time original
    and pruned alternately on CPU (and on CUDA when it works). Returns one result row."""
    dg = dg or op.analyse_model(path)
    plan, builder = make_plan(dg, ratio, round_to)
    result = op.apply_plan(dg, plan)
    result.save(out_path)
    macs0, params0 = count_macs(dg.graph), count_params(dg.graph)
    macs1, params1 = model_stats(result.model)
    check = validate(path, out_path, plan=plan, oracle=True)
    row = {"ratio": ratio, "builder": builder, "groups": len(dg.prunable_groups()), "pruned": len(plan),
           "macs": (macs0, macs1), "params": (params0, params1), "oracle": check.passed, "exact": check.exact,
           "max_abs_diff": check.max_abs_diff}
    cpu = benchmark([path, out_path], provider="cpu", batch=batch, runs=runs, warmup=warmup, threads=threads,
                    min_seconds=min_seconds)
    row["cpu"] = cpu
    if cuda if cuda is not None else cuda_works():
        row["cuda"] = benchmark([path, out_path], provider="cuda", batch=batch, runs=runs, warmup=warmup,
                                min_seconds=min_seconds)
    return row


def emit(text: str, out: str | None) -> None:
    """Print a results block and, with ``out``, append it to that markdown file."""
    print(text)
    if out:
        with open(out, "a") as f:
            f.write(text + "\n\n")
