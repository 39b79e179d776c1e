#!/usr/bin/env bash
# GPU check (issue 13 part 7): on a machine with an NVIDIA GPU, the CUDA path end to end in a few minutes --
# prune with validation on CUDA, bench with IO binding at batch 1 and 32, TensorRT where present, channel
# multiples of 8 and 16 -- appended to benchmarks/results_cuda.md. Options: see `python -m benchmarks.gpu_check -h`.
#
#   bash benchmarks/gpu_check.sh                              # needs nvidia-smi and onnxruntime-gpu's CUDA provider
#   ONNXPRUNE_GPU_CHECK_CPU=1 bash benchmarks/gpu_check.sh    # the same steps on the CPU provider, small sizes,
#                                                             # no file written: a smoke test, not GPU figures
#
# Exit status: 0 all steps passed, 1 a step failed (listed in the results), 2 no usable GPU (says why).
# PYTHON selects the interpreter (default: the repository's .venv if present, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [ "${ONNXPRUNE_GPU_CHECK_CPU:-0}" = "0" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here: nvidia-smi is not on PATH; nothing measured." \
         "ONNXPRUNE_GPU_CHECK_CPU=1 runs the same steps on the CPU provider as a smoke test." >&2
    exit 2
fi
exec "$PYTHON" -m benchmarks.gpu_check "$@"
