"""Long fuzzing run of ``onnxprune prune`` (the cases of tests/test_fuzz.py, for as long as asked).

    python -m benchmarks.fuzz_long --minutes 10 [--workers 1] [--no-zoo] [--json out.json]

Cases alternate between random valid CNNs (tests/graphgen.py) and random corruptions (bit flips, truncation,
deleted nodes, renamed inputs, wrong value_info shapes, removed or reshaped initializers, ...) of base models: the
fuzz test's small models plus, unless --no-zoo, zoo exports (TorchScript and dynamo) and QDQ-quantized ones. Each
case runs in a worker process, so a segfault or a hang (over 120 s) is counted, not fatal. Prints counts of
successes, refusals by message kind, and every crash or invalid result with the case that reproduces it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, TimeoutError
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_MODELS: dict = {}
_WORKDIR: Path | None = None


def _zoo_models(directory: Path) -> dict:
    """A few zoo models, exported (and QDQ-quantized) once."""
    import onnx

    from onnxprune import models

    found = {}
    for name in ("resnet_basic", "mobilenet_v2", "densenet", "shufflenet_v2", "lstm_text"):
        for exporter in ("torchscript", "dynamo"):
            try:
                path = models.export(name, directory / f"{name}.{exporter}.onnx", exporter, keep_bn=False)
            except Exception as exc:  # an exporter that cannot handle a model is not what we fuzz
                print(f"skipping {name} ({exporter}): {exc}", file=sys.stderr)
                continue
            found[f"{name}.{exporter}"] = onnx.load(str(path))
    try:
        from test_quantized import quantize

        for name in ("resnet_basic", "mobilenet_v2"):
            src = directory / f"{name}.torchscript.onnx"
            if src.exists():
                for per_channel in (False, True):
                    out = quantize(str(src), str(directory / f"{name}.qdq{int(per_channel)}.onnx"), per_channel)
                    found[f"{name}.qdq{'_pc' if per_channel else ''}"] = onnx.load(out)
    except Exception as exc:
        print(f"skipping QDQ models: {exc}", file=sys.stderr)
    return found


def _init_worker(model_dir: str, workdir: str) -> None:
    import onnx

    global _WORKDIR
    _WORKDIR = Path(workdir)
    for path in sorted(Path(model_dir).glob("*.onnx")):
        _MODELS[path.stem] = onnx.load(str(path))


def _random_choices(rng) -> list:
    from tests.support.graphgen import BLOCKS

    return [(BLOCKS[int(rng.integers(len(BLOCKS)))], int(rng.integers(1000))) for _ in range(int(rng.integers(1, 11)))]


def run_one(seed: int) -> tuple[str, str, str, str, float]:
    """Case ``seed`` (even: a valid random graph, odd: a corruption): (what, kind, message, detail, seconds)."""
    import numpy as np

    from tests.analysis.test_fuzz import corrupted_case, run_case
    from tests.support.graphgen import build_random_cnn

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    if seed % 2 == 0:
        choices = _random_choices(rng)
        ratio = float(rng.choice([0.1, 0.3, 0.5, 0.8]))
        what = f"valid random_cnn({choices}, seed {seed}, ratio {ratio})"
        outcome = run_case(build_random_cnn(choices, seed).SerializeToString(), _WORKDIR, ratio)
    else:
        what, data = corrupted_case(_MODELS, seed)
        outcome = run_case(data, _WORKDIR, float(rng.choice([0.3, 0.5])))
    return what, outcome.kind, outcome.message, outcome.detail, time.perf_counter() - start


def _alone(seed: int, model_dir: Path, workdir: Path) -> tuple[str, str, str, str, float]:
    """Run case ``seed`` in a fresh process of its own, to tell which case of a broken batch killed its worker."""
    import subprocess

    code = (f"import sys; sys.path[:0] = {[str(ROOT)]!r}; import benchmarks.fuzz_long as f, json; "
            f"f._init_worker({str(model_dir)!r}, {str(workdir)!r}); print(json.dumps(f.run_one({seed})))")
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return f"case {seed}", "hang", "", "over 120 s", time.perf_counter() - start
    if done.returncode != 0:
        tail = " / ".join(done.stderr.strip().splitlines()[-2:])
        return f"case {seed}", "process crash", "", f"exit {done.returncode}: {tail}", time.perf_counter() - start
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1000, help="First case number.")
    parser.add_argument("--no-zoo", action="store_true", help="Only the small models (no torch exports).")
    parser.add_argument("--json", type=Path, default=None, help="Write the figures and failures as JSON.")
    args = parser.parse_args()
    import onnx

    from tests.analysis.test_fuzz import base_models, refusal_kind

    tmp = Path(tempfile.mkdtemp(prefix="onnxprune_fuzz_"))
    model_dir, workdir = tmp / "models", tmp / "cases"
    model_dir.mkdir()
    workdir.mkdir()
    bases = base_models()
    if not args.no_zoo:
        export_dir = tmp / "zoo"
        export_dir.mkdir()
        bases.update(_zoo_models(export_dir))
    for name, model in bases.items():
        onnx.save_model(model, str(model_dir / f"{name}.onnx"))
    print(f"{len(bases)} base models: {', '.join(sorted(bases))}", flush=True)

    counts: collections.Counter = collections.Counter()
    refusals: collections.Counter = collections.Counter()
    by_corruption: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures, seconds = [], []
    deadline = time.time() + args.minutes * 60
    seed = args.seed

    def pool():
        import multiprocessing

        return ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(str(model_dir), str(workdir)))

    executor = pool()
    while time.time() < deadline:
        batch = list(range(seed, seed + 4 * args.workers))
        seed += len(batch)
        futures = [(s, executor.submit(run_one, s)) for s in batch]
        for s, future in futures:
            try:
                what, kind, message, detail, took = future.result(timeout=120)
            except (BrokenProcessPool, TimeoutError):
                processes = list((getattr(executor, "_processes", None) or {}).values())
                executor.shutdown(wait=False, cancel_futures=True)
                for proc in processes:
                    proc.kill()
                executor = pool()
                what, kind, message, detail, took = _alone(s, model_dir, workdir)
            counts[kind] += 1
            seconds.append(took)
            corruption = what.split("(")[0] if not what.startswith("valid") else "valid graph"
            by_corruption[corruption][kind] += 1
            if kind == "refused":
                refusals[refusal_kind(message)] += 1
            elif kind != "ok":
                failures.append({"case": s, "what": what, "kind": kind, "message": message, "detail": detail})
                print(f"!! {kind}: {what}: {message} {detail}", flush=True)
        if sum(counts.values()) % 200 < 4 * args.workers:
            print(f"[{args.minutes * 60 - (deadline - time.time()):6.0f}s] {dict(counts)}", flush=True)
    executor.shutdown(wait=False, cancel_futures=True)
    total = sum(counts.values())
    figures = {"minutes": args.minutes, "cases": total, "outcomes": dict(counts), "refusals": dict(refusals),
               "by_case_kind": {k: dict(v) for k, v in sorted(by_corruption.items())},
               "median_case_seconds": sorted(seconds)[len(seconds) // 2] if seconds else None,
               "failures": failures, "base_models": sorted(bases)}
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    os.system(f"rm -rf {tmp}")


if __name__ == "__main__":
    main()
