"""Latency (DESIGN.md section 6) on onnxruntime or OpenVINO: warm-up, then timed runs; two models alternate run by
run in one process, so that load and clock noise hit both alike and the speedup is the ratio of their medians.

On CUDA (and TensorRT) the inputs are copied to the device once and the outputs stay there (IO binding), so only
the model's own work is timed; on CPU each run is a plain ``session.run``, and on OpenVINO one synchronous
``infer`` (f32, LATENCY hint; see ``runtime.openvino``), timed the same way with the same statistics. The report
says how much CPU time other processes took while timing (from /proc/stat), which exposes load on a shared
machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from onnxprune.errors import OnnxPruneError
from onnxprune.progress import track
from onnxprune.runtime import (
    OPENVINO_DEVICE,
    OpenVinoSession,
    available_provider,
    check_runtime,
    example_inputs,
    provider_list,
)
from onnxprune.runtime.inputs import describe_feeds

ModelSource = str | os.PathLike | onnx.ModelProto


@dataclass
class ModelTiming:
    """The timed runs of one model, in milliseconds."""

    path: str
    times_ms: np.ndarray
    inputs: str = ""  # the input shapes it ran at: 'x=1x3x224x224, mask=1x16'

    @property
    def median_ms(self) -> float:
        """Median latency."""
        return float(np.median(self.times_ms))

    @property
    def p90_ms(self) -> float:
        """90th percentile latency."""
        return float(np.percentile(self.times_ms, 90))

    def to_dict(self) -> dict:
        """JSON-ready form: path, median, p90, min and standard deviation in ms, the input shapes used."""
        return {"path": self.path, "median_ms": round(self.median_ms, 4), "p90_ms": round(self.p90_ms, 4),
                "min_ms": round(float(np.min(self.times_ms)), 4), "std_ms": round(float(np.std(self.times_ms)), 4),
                "inputs": self.inputs}


@dataclass
class BenchReport:
    """Latency of one or two models measured together; ``speedup`` = median(model 0) / median(model 1).
    ``provider``: the onnxruntime provider, or 'OpenVINO CPU'; ``spinning`` is None on OpenVINO (no such option)."""

    provider: str
    batch: int
    runs: int
    warmup: int
    threads: int
    models: list[ModelTiming]
    other_load: float | None = None
    spinning: bool | None = True
    runtime: str = "onnxruntime"

    @property
    def speedup(self) -> float | None:
        """median(first) / median(second), None for a single model."""
        if len(self.models) < 2:
            return None
        return self.models[0].median_ms / self.models[1].median_ms

    @property
    def paired_speedup(self) -> float | None:
        """Median over rounds of time(first) / time(second) in the same round: robust to load that changes
        between rounds on a shared machine. None for a single model."""
        if len(self.models) < 2:
            return None
        return float(np.median(self.models[0].times_ms / self.models[1].times_ms))

    def to_dict(self) -> dict:
        """JSON-ready form with stable keys: runtime, provider, batch, runs, warmup, threads, models, speedup,
        paired_speedup, other_load, spinning."""
        speedup, paired = self.speedup, self.paired_speedup
        return {"runtime": self.runtime, "provider": self.provider, "batch": self.batch, "runs": self.runs,
                "warmup": self.warmup, "threads": self.threads, "models": [m.to_dict() for m in self.models],
                "speedup": None if speedup is None else round(speedup, 4),
                "paired_speedup": None if paired is None else round(paired, 4),
                "other_load": None if self.other_load is None else round(self.other_load, 3),
                "spinning": self.spinning}

    def format_table(self) -> str:
        """A human table: one line per model, then the speedup."""
        threads = self.threads or "default"
        lines = [f"{self.provider}, batch {self.batch}, {self.runs} runs after {self.warmup} warm-up, "
                 f"threads {threads}{', no spinning' if self.spinning is False else ''}",
                 f"{'model':<40} {'median ms':>10} {'p90 ms':>10} {'min ms':>10} {'std ms':>9}"]
        for timing in self.models:
            d = timing.to_dict()
            name = d["path"] if len(d["path"]) <= 40 else "..." + d["path"][-37:]
            lines.append(f"{name:<40} {d['median_ms']:>10.3f} {d['p90_ms']:>10.3f} {d['min_ms']:>10.3f} "
                         f"{d['std_ms']:>9.3f}")
        for shapes in dict.fromkeys(t.inputs for t in self.models if t.inputs):
            lines.append(f"input shapes: {shapes}")
        if self.speedup is not None:
            lines.append(f"speedup (median of first / median of second): {self.speedup:.3f}x; "
                         f"paired per round: {self.paired_speedup:.3f}x")
        if self.other_load is not None and self.other_load > 0.1:
            lines.append(f"warning: other processes used {self.other_load:.0%} of this machine's CPU time while "
                         "timing; latencies are inflated and noisy")
        return "\n".join(lines)


def session_options(threads: int = 0, spinning: bool = True) -> ort.SessionOptions:
    """Quiet session options with ``intra_op_num_threads`` set when ``threads`` > 0 (0 = onnxruntime's default);
    ``spinning=False`` makes idle intra-op threads sleep instead of busy-waiting."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _session(model: ModelSource, k: int, provider: str, threads: int, spinning: bool,
             runtime: str) -> ort.InferenceSession | OpenVinoSession:
    try:
        if runtime == "openvino":
            return OpenVinoSession(model, threads)
        data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else os.fspath(model)
        return ort.InferenceSession(data, session_options(threads, spinning), providers=provider_list(provider))
    except Exception as exc:
        name = "OpenVINO" if runtime == "openvino" else "onnxruntime"
        raise OnnxPruneError(f"{name} cannot load {_label(model, k)}: {' '.join(str(exc).split())}") from None


def _label(model: ModelSource, k: int) -> str:
    return f"<model {k}>" if isinstance(model, onnx.ModelProto) else os.fspath(model)


def _cpu_clock() -> tuple[float, float, float] | None:
    """(seconds all CPUs were busy or stolen, this process's CPU seconds, wall seconds); None without /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK"), time.process_time(), time.perf_counter()


def _other_load(start: tuple | None, end: tuple | None) -> float | None:
    """Share of the machine's CPU time that other processes (or the hypervisor) took between two _cpu_clock()s."""
    if start is None or end is None or end[2] - start[2] < 0.25:
        return None  # /proc/stat counts in clock ticks (10 ms): too coarse for a shorter window
    others = (end[0] - start[0]) - (end[1] - start[1])
    return min(1.0, max(0.0, others / ((end[2] - start[2]) * (os.cpu_count() or 1))))


def _signature(session: ort.InferenceSession) -> list[tuple]:
    return [(i.name, i.type, tuple(i.shape)) for i in session.get_inputs()]


def _runner(session: ort.InferenceSession, feeds: dict[str, np.ndarray], provider: str) -> Callable[[], None]:
    """A no-argument call that runs the model once; on CUDA and TensorRT through IO binding with device-resident
    data."""
    if provider not in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        return lambda: session.run(None, feeds)
    binding = session.io_binding()
    on_device = {name: ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0) for name, array in feeds.items()}
    for name, value in on_device.items():
        binding.bind_ortvalue_input(name, value)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda", 0)
    binding.synchronize_inputs()  # the binding shares ownership of the device copies
    return lambda: session.run_with_iobinding(binding)  # synchronises the device at the end of each run


def benchmark(models: Sequence[ModelSource], provider: str = "auto", batch: int = 1, runs: int = 50,
              warmup: int = 10, threads: int = 0, dims: dict[str, int] | None = None, seed: int = 0,
              spinning: bool | None = None, min_seconds: float = 0.0, runtime: str = "onnxruntime",
              shapes: dict[str, list] | None = None) -> BenchReport:
    """Time one or more models (paths or ModelProtos) on onnxruntime (``provider`` auto, cpu, cuda, tensorrt) or
    on OpenVINO's CPU plugin (``runtime="openvino"``, provider 'auto'); with several, they alternate run by run
    (the order swapped every round) and all get the same random feeds (sized by ``shapes``, the user's per-input
    --input-shape, and ``dims``; else batch dims ``batch`` and other symbolic dims as ``example_inputs`` chooses;
    the report lists the shapes used).

    ``spinning`` (None = auto): onnxruntime's idle intra-op threads busy-wait by default; with several models
    alternating, the threads of the session that just ran would then hold cores the next one needs (on 2 cores
    that doubled a ResNet-50's latency), so auto turns spinning off when more than one model is timed.
    ``min_seconds``: raise ``runs`` so the timed part lasts about that long (estimated from the warm-up)."""
    if not models:
        raise OnnxPruneError("benchmark needs at least one model")
    if runs < 1 or warmup < 0 or batch < 1:
        raise OnnxPruneError(f"runs must be >= 1, warmup >= 0 and batch >= 1 (got {runs}, {warmup}, {batch})")
    check_runtime(runtime, provider)
    resolved = OPENVINO_DEVICE if runtime == "openvino" else available_provider(provider)
    spinning = None if runtime == "openvino" else len(models) == 1 if spinning is None else spinning
    sessions = [_session(m, k, resolved, threads, spinning, runtime) for k, m in enumerate(models)]
    first = example_inputs(models[0], sessions[0], batch=batch, seed=seed, dims=dims, shapes=shapes)
    feeds = [first if _signature(s) == _signature(sessions[0]) else example_inputs(m, s, batch, seed, dims, shapes)
             for m, s in zip(models, sessions)]
    runners = [_runner(s, f, resolved) for s, f in zip(sessions, feeds)]
    warm_start = time.perf_counter()
    for _ in range(warmup):
        for run in runners:
            run()
    if min_seconds > 0 and warmup > 0:
        per_round = max((time.perf_counter() - warm_start) / warmup, 1e-6)
        runs = max(runs, min(int(np.ceil(min_seconds / per_round)), 100_000))
    times = np.zeros((len(runners), runs))
    order = list(range(len(runners)))
    clock = _cpu_clock()
    for r in track(range(runs), "timing"):
        for k in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter_ns()
            runners[k]()
            times[k, r] = (time.perf_counter_ns() - start) / 1e6
    other = _other_load(clock, _cpu_clock())
    timings = [ModelTiming(_label(m, k), times[k], describe_feeds(f)) for k, (m, f) in enumerate(zip(models, feeds))]
    return BenchReport(provider=resolved, batch=batch, runs=runs, warmup=warmup, threads=threads, models=timings,
                       other_load=other, spinning=spinning, runtime=runtime)
