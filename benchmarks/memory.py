"""Peak memory of ``onnxprune prune`` on a single-file model (weights inline), with and without validation.

    python -m benchmarks.memory [--model vgg16] [--dir /tmp/onnxprune_real] [--ratio 0.5] [--label after]
                                [--out benchmarks/results_memory.md]

Exports ``models.real_width_spec(model)`` (default VGG-16 at real widths: one 553 MB .onnx file, TorchScript, all
weights inline), then runs ``python -m onnxprune.cli prune FILE OUT --ratio R`` in a child process, once as is and
once with ``--no-validate``, and reads the child's peak resident set from ``os.wait4`` (``ru_maxrss``: it counts
every page the process had resident at once, memory-mapped file pages included). A child that only imports the CLI
gives the interpreter's own share (``import`` column), so the table shows both the raw peak and the peak above it,
each as a multiple of the file size. Targets (issue 11): peak at most 2x the file with validation, 1.5x without.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.measure import emit
from onnxprune import models

ROOT = Path(__file__).resolve().parent.parent


# A forked child's ru_maxrss counts the pages it shared with its parent before exec, so this process (which holds
# torch) measures through a small launcher: the launcher's child is forked from a process of a few MB.
_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
print(f"PEAK_RSS_KB {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def peak_rss(args: list[str]) -> tuple[float, int, str]:
    """Run ``args`` in a child: (seconds, peak RSS in bytes, output); raises SystemExit when it fails."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          cwd=ROOT)
    seconds = time.perf_counter() - start
    output = done.stdout.decode()
    last = output.strip().splitlines()[-1].split()
    if last[0] != "PEAK_RSS_KB" or last[2] != "0":
        raise SystemExit(f"{' '.join(args)} failed:\n{output}")
    return seconds, int(last[1]) * 1024, output.rsplit("PEAK_RSS_KB", 1)[0]


def main() -> None:
    """Export the model if needed, measure both runs, print (and optionally append) a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/onnxprune_real"))
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--label", default="")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    spec = models.real_width_spec(args.model)
    path = args.dir / f"{spec.name}.torchscript.nobn.onnx"
    if not path.exists():
        models.export(spec, path, "torchscript", keep_bn=False)
    size = path.stat().st_size
    _, base, _ = peak_rss([sys.executable, "-c", "import onnxprune.cli"])
    rows = []
    for validate in (True, False):
        out = args.dir / f"{spec.name}.pruned.onnx"
        cmd = [sys.executable, "-m", "onnxprune.cli", "prune", str(path), str(out), "--ratio", str(args.ratio)]
        seconds, peak, output = peak_rss(cmd + ([] if validate else ["--no-validate"]))
        rows.append((validate, seconds, peak, out.stat().st_size))
        print(output.strip().splitlines()[-1] if output.strip() else "", flush=True)
        out.unlink()
    lines = [f"{spec.name} {args.label}: {size / 1e6:.0f} MB file (weights inline), `onnxprune prune --ratio "
             f"{args.ratio}`, {os.cpu_count()} CPU cores; importing the CLI alone peaks at {base / 1e6:.0f} MB", "",
             "| validation | time s | peak RSS MB | peak / file | peak above import / file | output MB |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {'on' if v else 'off (--no-validate)'} | {s:.1f} | {p / 1e6:.0f} | {p / size:.2f} | "
              f"{(p - base) / size:.2f} | {o / 1e6:.0f} |" for v, s, p, o in rows]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
