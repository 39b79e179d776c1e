"""Prune a synthetic model over 2 GB (external data) and report time, peak RSS and its ratio to the model size.

    python -m benchmarks.big_model [--width 8192] [--layers 11] [--dir /tmp/onnxprune_big] [--validate]
                                   [--results benchmarks/results_big_model.md]

The model is a stack of ``layers`` Gemm+Relu layers of ``width`` x ``width`` float32 weights (8192 x 11: 2.95 GB),
written tensor by tensor to ``<dir>/big.onnx`` + ``big.onnx.data`` (never held in memory whole). ``onnxprune prune
--ratio 0.5`` runs in a child process whose peak RSS is read from ``os.wait4``; the output must be saved with
external data and pass ``onnx.checker.check_model(path)``. Without ``--validate`` the run is ``--no-validate``
(onnx.checker and an onnxruntime session still check the pruned model); ``--validate`` adds the mask-oracle run,
which needs onnxruntime sessions on the whole original model and costs memory accordingly.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(directory: Path, width: int, layers: int, seed: int = 0) -> Path:
    """Write the model (weights straight to the data file, one layer at a time); returns the model path."""
    directory.mkdir(parents=True, exist_ok=True)
    path, data_name = directory / "big.onnx", "big.onnx.data"
    rng = np.random.default_rng(seed)
    nodes, inits, current = [], [], "x"
    with open(directory / data_name, "wb") as data:
        for k in range(layers + 1):
            out_dim = width if k < layers else 16
            weight = TensorProto(name=f"w{k}", dims=[out_dim, width], data_type=TensorProto.FLOAT)
            weight.data_location = TensorProto.EXTERNAL
            offset = data.tell()
            scale = np.float32(1 / np.sqrt(width))
            for start in range(0, out_dim, 1024):  # 32 MB at a time
                rows = min(1024, out_dim - start)
                data.write((rng.standard_normal((rows, width), dtype=np.float32) * scale).tobytes())
            for key, value in (("location", data_name), ("offset", str(offset)),
                               ("length", str(out_dim * width * 4))):
                weight.external_data.add(key=key, value=value)
            inits += [weight, numpy_helper.from_array(rng.standard_normal(out_dim).astype(np.float32), f"b{k}")]
            gemm = f"g{k}" if k < layers else "y"
            nodes.append(helper.make_node("Gemm", [current, f"w{k}", f"b{k}"], [gemm], name=f"gemm{k}", transB=1))
            if k < layers:
                nodes.append(helper.make_node("Relu", [gemm], [f"r{k}"], name=f"relu{k}"))
                current = f"r{k}"
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], inits)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def model_bytes(path: Path) -> int:
    """Size of the model file plus its data file."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + ".data")) if p.exists())


def prune(path: Path, out: Path, validate: bool) -> tuple[float, int, str]:
    """Run ``onnxprune prune`` in a child process: (seconds, peak RSS in bytes, its stderr+stdout)."""
    args = [sys.executable, "-m", "onnxprune.cli", "prune", str(path), str(out), "--ratio", "0.5"]
    if not validate:
        args.append("--no-validate")
    start = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             cwd=Path(__file__).resolve().parent.parent)
    output = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"onnxprune failed ({child.returncode}):\n{output}")
    return seconds, usage.ru_maxrss * 1024, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=8192)
    parser.add_argument("--layers", type=int, default=11)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/onnxprune_big"))
    parser.add_argument("--validate", action="store_true", help="Also run the mask oracle (costs memory).")
    parser.add_argument("--results", type=Path, default=None, help="Append a markdown row to this file.")
    args = parser.parse_args()
    path = args.dir / "big.onnx"
    start = time.perf_counter()
    expected = (args.layers * args.width + 16) * args.width * 4
    if not path.exists() or model_bytes(path) < expected:
        path = build(args.dir, args.width, args.layers)
        print(f"built {path} in {time.perf_counter() - start:.1f} s")
    size = model_bytes(path)
    out = args.dir / "big_pruned.onnx"
    seconds, peak, output = prune(path, out, args.validate)
    onnx.checker.check_model(str(out))
    out_size = model_bytes(out)
    external = out.with_name(out.name + ".data").exists()
    row = (f"| {size / 1e9:.2f} GB ({args.layers} x {args.width}^2) | {'on' if args.validate else 'off'} | "
           f"{seconds:.1f} s | {peak / 1e9:.2f} GB | {peak / size:.2f} | {out_size / 1e9:.2f} GB "
           f"({'external data' if external else 'one file'}) |")
    print(output)
    print(f"model {size / 1e9:.2f} GB -> {out_size / 1e9:.2f} GB, {seconds:.1f} s, peak RSS {peak / 1e9:.2f} GB "
          f"= {peak / size:.2f} x the model size; output passes onnx.checker (path); external data: {external}")
    print(row)
    if args.results is not None:
        with open(args.results, "a") as f:
            f.write(row + "\n")


if __name__ == "__main__":
    main()
