"""Output comparison: run a reference and a candidate model on the same inputs and judge the difference. The one
comparer of onnxprune (``prune``'s validation, ``validate``, the tests), with one result type, ``Comparison``.

Two criteria, one per kind of reference:
- against the **mask oracle** (``oracle=True``): the candidate must compute the same function, so it passes when
  max |diff| <= atol, or rtol * max(1, max |reference|) (default rtol 1e-4);
- against the **original** (``oracle=False``, a plan with groups that are not mask-exact, or no plan): pruning
  changes the function, so it passes when the *drift* is at most ``max_drift`` (default 0.01). The drift of an
  output is 1 - top-1 agreement for classifier-like outputs ([N, classes] floats), 1 - cosine similarity for other
  float outputs, the fraction of differing entries for integer/bool ones; of a model, the largest over outputs.
  So the default asks for top-1 agreement >= 99% and cosine >= 0.99 on the inputs used.
NaN and infinite entries must match exactly (``max_abs_diff``); where they do not, max |diff| and drift are inf.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from onnxprune.data.batching import prepare_calibration
from onnxprune.errors import ValidationError
from onnxprune.runtime import (
    ModelSource,
    available_provider,
    check_runtime,
    example_inputs,
    make_session,
    random_inputs,
)
from onnxprune.runtime.cpu_layouts import runnable_on_cpu
from onnxprune.runtime.parts import PartedSession, reference_session

DEFAULT_RTOL = 1e-4
DEFAULT_MAX_DRIFT = 0.01
ORACLE_BATCH = 2  # random samples for an oracle check (any difference is a bug, a few samples show it)
DRIFT_BATCH = 16  # random samples for a drift check (top-1 agreement needs more than a couple)
MAX_CALIBRATION_SAMPLES = 64

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
                "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


@dataclass
class Comparison:
    """The outputs of a candidate (pruned) model compared with a reference on the same inputs.

    oracle: the reference is the mask oracle and the criterion is the tolerance; otherwise the reference is the
    original and the criterion is ``drift <= max_drift``. ``outputs`` holds the per-output figures; ``reason``
    says why the outputs cannot be compared (count or shape changed: always a failure); ``note`` why the oracle
    does not apply, when it does not; ``exact``: whether the plan is mask-exact (None when no plan was given).
    """

    passed: bool
    oracle: bool
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float
    top1_agreement: float | None
    drift: float
    tolerance: float | None
    max_drift: float | None
    scale: float
    provider: str
    inputs: str
    outputs: list[dict] = field(default_factory=list)
    reason: str = ""
    note: str = ""
    exact: bool | None = None
    reference_provider: str = ""  # what ran the reference, when that is not ``provider`` (another runtime)

    @property
    def criterion(self) -> str:
        """'tolerance' (mask oracle) or 'drift' (original)."""
        return "tolerance" if self.oracle else "drift"

    def to_dict(self) -> dict:
        """JSON-ready form with stable keys."""
        return {"passed": self.passed, "oracle": self.oracle, "criterion": self.criterion,
                "reference": "mask oracle" if self.oracle else "original", "exact": self.exact,
                "max_abs_diff": self.max_abs_diff, "mean_abs_diff": self.mean_abs_diff, "cosine": self.cosine,
                "top1_agreement": self.top1_agreement, "drift": self.drift, "tolerance": self.tolerance,
                "max_drift": self.max_drift, "scale": self.scale, "provider": self.provider, "inputs": self.inputs,
                "outputs": self.outputs, "reason": self.reason, "note": self.note,
                "reference_provider": self.reference_provider}

    @classmethod
    def from_dict(cls, data: dict) -> Comparison:
        """Inverse of ``to_dict`` (e.g. from a ``--report`` JSON's ``validation``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def format(self) -> str:
        """One human line: verdict, reference, the figures the criterion used, then the others."""
        verdict = "PASSED" if self.passed else "FAILED"
        top1 = "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.2%}"
        if self.oracle:
            head = f"{verdict} vs mask oracle: max |diff| {self.max_abs_diff:.3g} (tolerance {self.tolerance:.3g})"
        else:
            head = (f"{verdict} vs original: drift {self.drift:.3g} (allowed {self.max_drift:.3g}; 1 - top-1 "
                    f"agreement or 1 - cosine), max |diff| {self.max_abs_diff:.3g}")
        tail = "".join(f"; {text}" for text in (self.reason, self.note) if text)
        ran = self.provider + (f"; reference on onnxruntime {self.reference_provider}" if self.reference_provider
                               else "")
        return (f"{head}, mean |diff| {self.mean_abs_diff:.3g}, cosine {self.cosine:.6f}{top1} on {self.inputs} "
                f"({ran}){tail}")

    def summary(self) -> str:
        """A short form for ``prune``'s report line."""
        verdict = "PASSED" if self.passed else "FAILED"
        on = f" on {self.inputs}" if self.inputs else ""
        why = f"; {self.note}" if self.note else ""
        if self.oracle:
            return f"{verdict} (mask oracle, max abs diff {self.max_abs_diff:.2e}{on}{why})"
        top1 = "" if self.top1_agreement is None else f", top-1 {self.top1_agreement:.0%}"
        return (f"{verdict} (drift {self.drift:.3g}, allowed {self.max_drift:.3g}: max |diff| "
                f"{self.max_abs_diff:.3g}, cosine {self.cosine:.4f}{top1}{on}{why})")


def max_abs_diff(ref: np.ndarray, got: np.ndarray) -> float:
    """max |ref - got|, where NaN and infinite entries must match exactly (a weight holding inf or NaN gives the
    same non-finite outputs in both models); inf when they do not, or when the shapes differ."""
    if ref.shape != got.shape:
        return float("inf")
    if not np.issubdtype(ref.dtype, np.floating):
        return float(np.max(np.abs(ref.astype(np.float64) - got), initial=0.0))
    finite = np.isfinite(ref)
    same = (np.isnan(ref) & np.isnan(got)) | (~finite & (ref == got))
    if not np.all(finite | same) or not np.all(np.isfinite(got[finite])):
        return float("inf")
    return float(np.max(np.abs(ref[finite].astype(np.float64) - got[finite]), initial=0.0))


def output_figures(name: str, ref: np.ndarray, got: np.ndarray) -> dict:
    """Figures of one output: max and mean |diff|, cosine, max |reference|, top-1 agreement (classifier-like
    outputs) and drift; ``shape_mismatch`` instead when the shapes differ."""
    if ref.shape != got.shape:
        return {"name": name, "shape_mismatch": [list(ref.shape), list(got.shape)]}
    worst = max_abs_diff(ref, got)
    floating = np.issubdtype(ref.dtype, np.floating)
    both = np.isfinite(ref) & np.isfinite(got) if floating else np.ones(ref.shape, dtype=bool)
    r, g = ref[both].astype(np.float64), got[both].astype(np.float64)
    norms = np.linalg.norm(r) * np.linalg.norm(g)
    cosine = float(r @ g / norms) if norms > 0 else float(np.array_equal(r, g))
    result = {"name": name, "shape": list(ref.shape), "max_abs_diff": worst,
              "mean_abs_diff": float(np.abs(r - g).mean()) if r.size else 0.0, "cosine": cosine,
              "max_abs_reference": float(np.abs(r).max()) if r.size else 0.0, "size": int(ref.size)}
    if floating and ref.ndim == 2 and ref.shape[1] > 1 and ref.shape[0] > 0:
        result["top1_agreement"] = float(np.mean(ref.argmax(axis=1) == got.argmax(axis=1)))
        drift = 1.0 - result["top1_agreement"]
    elif floating:
        drift = 1.0 - cosine
    else:
        drift = float(np.mean(ref != got)) if ref.size else 0.0
    result["drift"] = float("inf") if worst == float("inf") else max(0.0, drift)
    return result


def input_feeds(session, calib, batch: int, seed: int = 0, model: ModelSource | None = None,
                shapes: dict[str, list] | None = None) -> tuple[list, str]:
    """Feed dicts for ``session``'s inputs and a description of them: ``batch`` random samples, or up to
    MAX_CALIBRATION_SAMPLES samples of ``calib`` (an .npz path or {input: array}, a Calibration, ...: cast to the
    input types, batched by ``prepare_calibration`` on ``model``, nothing held out); whole-feed calibration (graphs,
    inputs that share no sample axis) is counted, and described, in feeds. Random samples are sized by ``shapes``
    (the user's ``--input-shape``) first, then as ``example_inputs`` chooses."""
    if calib is None:  # inputs the model runs on: ids below their tables, symbolic sizes it accepts
        feeds = (example_inputs(model, session, batch=batch, seed=seed, shapes=shapes) if model is not None
                 else random_inputs(session, batch=batch, seed=seed))
        return [feeds], f"{_leading(feeds)} random samples (seed {seed})"
    types = {i.name: _NUMPY_TYPES.get(i.type) for i in session.get_inputs()}
    calibration = prepare_calibration(model, calib, holdout=0.0, batch_size=16)
    whole = calibration.whole_feeds  # one feed per sample (a graph): its first dimension counts nodes, not samples
    batches, used = [], 0
    for feeds in calibration.fit:
        feeds = {n: np.asarray(a, dtype=types.get(n)) for n, a in feeds.items()}
        batches.append(feeds)
        used += 1 if whole else _leading(feeds)
        if used >= MAX_CALIBRATION_SAMPLES:
            break
    if whole:
        return batches, f"{used} whole calibration feed{'s' if used != 1 else ''}"
    return batches, f"{used} calibration samples"


def _leading(feeds: dict) -> int:
    return next((int(a.shape[0]) for a in feeds.values() if np.ndim(a)), 1)


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    if len(arrays) == 1:
        return arrays[0]
    try:
        return np.concatenate(arrays, axis=0)
    except ValueError:
        return np.concatenate([a.ravel() for a in arrays])


def compare(reference: ModelSource, candidate: ModelSource, feeds: dict | list[dict] | None = None, *,
            oracle: bool = True, calib=None, rtol: float = DEFAULT_RTOL, atol: float | None = None,
            max_drift: float = DEFAULT_MAX_DRIFT, batch: int | None = None, seed: int = 0, provider: str = "cpu",
            note: str = "", exact: bool | None = None, runtime: str = "onnxruntime",
            shapes: dict[str, list] | None = None) -> Comparison:
    """Run ``reference`` and ``candidate`` on the same inputs (``feeds``: one feed dict or several; else ``calib``
    data; else ``batch`` random samples, ORACLE_BATCH or DRIFT_BATCH by default) with onnxruntime's fusions off
    (see ``make_session``) on ``provider``, and judge by the oracle tolerance or the drift criterion (module
    docstring). ``runtime="openvino"`` runs the candidate on OpenVINO's CPU plugin (the reference stays on
    onnxruntime, ``provider``; the result names both). ProviderError when the provider or runtime does not work
    here; ValidationError when a model fails to run. ``shapes``: the user's per-input shapes for random inputs."""
    on_cpu = available_provider(provider) == "CPUExecutionProvider"  # a provider that does not work: user's error
    check_runtime(runtime)
    if on_cpu:  # layouts onnxruntime runs on CUDA only are split for its CPU kernels (cpu_layouts)
        reference, split = runnable_on_cpu(reference)
        if runtime == "onnxruntime":
            candidate, split_too = runnable_on_cpu(candidate)
            split = split or split_too
        if split:
            note = "; ".join(filter(None, [note, "packed MultiHeadAttention inputs split to 3-D for onnxruntime's "
                                                 "CPU kernel (the written model keeps them packed)"]))
    batch = batch or (ORACLE_BATCH if oracle else DRIFT_BATCH)
    try:
        ref_session = reference_session(reference, provider)  # a big one a part at a time (runtime.parts)
        if isinstance(ref_session, PartedSession):
            note = "; ".join(filter(None, [note, f"reference run in {len(ref_session.parts)} parts"]))
        ref_provider = ref_session.get_providers()[0]
        if feeds is None:
            batches, inputs = input_feeds(ref_session, calib, batch, seed, reference, shapes)
        else:
            batches = [feeds] if isinstance(feeds, dict) else list(feeds)
            inputs = f"{sum(_leading(f) for f in batches)} given samples"
        refs = [ref_session.run(None, f) for f in batches]
        names = [o.name for o in ref_session.get_outputs()]
        del ref_session  # one model's weights in onnxruntime at a time: big models peak lower
    except Exception as exc:
        raise ValidationError(f"onnxruntime cannot run the {'mask oracle' if oracle else 'original'} model: "
                              f"{exc}") from None
    try:
        got_session = (make_session(candidate, provider, fuse=False, prepack=False) if runtime == "onnxruntime" else
                       make_session(candidate, "auto", fuse=False, runtime=runtime))
        gots = [got_session.run(None, f) for f in batches]
        used = got_session.get_providers()[0]
        del got_session
    except Exception as exc:
        if runtime != "onnxruntime":
            raise ValidationError(f"{runtime} cannot run the pruned model (onnxruntime runs the "
                                  f"{'mask oracle' if oracle else 'original'}): {' '.join(str(exc).split())}") from None
        raise ValidationError(f"onnxruntime cannot run the pruned model although it runs the original (please "
                              f"report this as a bug): {exc}") from None
    reason = ""
    if len(refs[0]) != len(gots[0]):
        reason = f"the reference has {len(refs[0])} outputs, the pruned model {len(gots[0])}"
    outputs = []
    for k, name in enumerate(names[:len(gots[0])]):
        pairs = [(r[k], g[k]) for r, g in zip(refs, gots)]
        bad = next(((r, g) for r, g in pairs if r.shape != g.shape), None)
        outputs.append(output_figures(name, *bad) if bad else
                       output_figures(name, _joined([r for r, _ in pairs]), _joined([g for _, g in pairs])))
    mismatch = [o for o in outputs if "shape_mismatch" in o]
    if mismatch:
        reason = (f"output '{mismatch[0]['name']}' shape {mismatch[0]['shape_mismatch'][0]} became "
                  f"{mismatch[0]['shape_mismatch'][1]}")
    good = [o for o in outputs if "shape_mismatch" not in o]
    inf = float("inf")
    worst = max([o["max_abs_diff"] for o in good] or [inf if reason else 0.0])
    total = sum(o["size"] for o in good)
    mean = sum(o["mean_abs_diff"] * o["size"] for o in good) / total if total else 0.0
    cosine = min([o["cosine"] for o in good] or [0.0 if reason else 1.0])
    top1 = [o["top1_agreement"] for o in good if "top1_agreement" in o]
    drift = max([o["drift"] for o in good] or [inf if reason else 0.0])
    scale = max([o["max_abs_reference"] for o in good] or [0.0])
    tolerance = (float(atol) if atol is not None else rtol * max(1.0, scale)) if oracle else None
    passed = not reason and bool(worst <= tolerance if oracle else drift <= max_drift)
    return Comparison(passed=passed, oracle=oracle, max_abs_diff=worst, mean_abs_diff=mean, cosine=cosine,
                      top1_agreement=min(top1) if top1 else None, drift=drift, tolerance=tolerance,
                      max_drift=None if oracle else float(max_drift), scale=scale,
                      provider=used, inputs=inputs, outputs=outputs, reason=reason,
                      note=note, exact=exact, reference_provider=ref_provider if runtime != "onnxruntime" else "")

