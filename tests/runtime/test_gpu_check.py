"""benchmarks/gpu_check: without a GPU it says why and exits 2; its CPU dry run goes through every step (prune
validated on the provider, bench at two batches, the TensorRT stand-in, round_to runs) and writes the tables."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parents[2]


def test_no_nvidia_smi_exits_2_saying_why(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv(gpu_check.CPU_ENV, raising=False)
    monkeypatch.setattr(gpu_check, "nvidia_smi", lambda: None)
    out = tmp_path / "results.md"
    assert gpu_check.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no NVIDIA GPU here: nvidia-smi is missing or fails" in err and f"{gpu_check.CPU_ENV}=1" in err
    assert not out.exists()


def test_gpu_without_a_working_cuda_provider_exits_2_saying_why(monkeypatch, capsys):
    monkeypatch.delenv(gpu_check.CPU_ENV, raising=False)
    monkeypatch.setattr(gpu_check, "nvidia_smi", lambda: "Some GPU, 550.1, 80000 MiB")
    monkeypatch.setattr(gpu_check, "cuda_works", lambda: False)
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert "nvidia-smi sees Some GPU" in err and "CUDAExecutionProvider does not start" in err


@pytest.mark.skipif(shutil.which("nvidia-smi", path="/usr/bin:/bin") is not None, reason="nvidia-smi present")
def test_shell_script_without_nvidia_smi_exits_2(tmp_path):
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    env.pop(gpu_check.CPU_ENV, None)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 2 and "nvidia-smi is not on PATH" in done.stderr and done.stdout == ""


@pytest.mark.slow
def test_cpu_dry_run_goes_through_every_step(tmp_path):
    out = tmp_path / "results_cuda.md"
    env = {**os.environ, gpu_check.CPU_ENV: "1"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("## ") and "CPU DRY RUN" in text and "Failures" not in text
    validations = [line for line in text.splitlines() if "| CPUExecutionProvider | PASSED vs mask oracle" in line]
    assert len(validations) == 2 * 4  # two models: ratio 0.5, then round_to 1, 8, 16
    timings = [line for line in text.splitlines() if "| onnxruntime CPU" in line]
    assert len(timings) == 2 * 3 + 2 * 3  # batches 1 and 2, the TensorRT stand-in; three round_to runs
    assert sum("CPU standing in for TensorRT" in line for line in timings) == 2
