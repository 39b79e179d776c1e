"""Prove a pruned model: the checks every written file gets (``check_file``), and output comparison with the
original or, with the plan, with the mask oracle (the original with the pruned channels zeroed where produced).

The plan JSON (written by ``Plan.to_dict``, read by ``load_plan``) names groups by their root tensor and axis, so
it survives re-analysis of the original, and lists the kept indices of every pruned initializer per axis.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from onnxprune.analysis import AnalysisOptions, analyse_model
from onnxprune.data.calibration import require_inputs
from onnxprune.errors import OnnxPruneError
from onnxprune.runtime import ModelSource, make_session, random_inputs
from onnxprune.selection.plan import load_plan
from onnxprune.validation.checks import check_model
from onnxprune.validation.oracle import masked_model, max_abs_diff

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def check_file(path: str | os.PathLike) -> None:
    """onnx.checker with full_check on the file (by path, so models over 2 GB work) and an onnxruntime session;
    raises ValidationError naming the file."""
    check_model(path)


@dataclass
class ValidationReport:
    """Output comparison of a pruned model with its reference (the original, or the masked original)."""

    passed: bool
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float
    top1_agreement: float | None
    oracle: bool
    tolerance: float
    provider: str
    exact: bool | None = None
    outputs: list[dict] = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> dict:
        """JSON-ready form with stable keys (``outputs`` holds the per-output figures)."""
        return {"passed": self.passed, "max_abs_diff": self.max_abs_diff, "mean_abs_diff": self.mean_abs_diff,
                "cosine": self.cosine, "top1_agreement": self.top1_agreement, "oracle": self.oracle,
                "tolerance": self.tolerance, "provider": self.provider, "exact": self.exact,
                "outputs": self.outputs, "reason": self.reason}

    def format(self) -> str:
        """One human line."""
        top1 = "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.2%}"
        what = "mask oracle" if self.oracle else "original"
        return (f"{'PASSED' if self.passed else 'FAILED'} vs {what}: max |diff| {self.max_abs_diff:.3g} "
                f"(tolerance {self.tolerance:.3g}), mean |diff| {self.mean_abs_diff:.3g}, cosine {self.cosine:.6f}"
                f"{top1}{'; ' + self.reason if self.reason else ''}")


def _feeds(session, calib, batch: int, seed: int) -> dict[str, np.ndarray]:
    if calib is None:
        return random_inputs(session, batch=batch, seed=seed)
    names = [i.name for i in session.get_inputs()]
    data = require_inputs(calib, names)
    types = {i.name: _NUMPY_TYPES.get(i.type) for i in session.get_inputs()}
    return {n: np.asarray(data[n], dtype=types[n]) for n in names}


def _compare_output(name: str, ref: np.ndarray, got: np.ndarray) -> dict:
    if ref.shape != got.shape:
        return {"name": name, "shape_mismatch": [list(ref.shape), list(got.shape)]}
    r, g = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    diff = np.abs(r - g)
    norms = np.linalg.norm(r) * np.linalg.norm(g)
    cosine = float(r @ g / norms) if norms > 0 else float(np.array_equal(r, g))
    result = {"name": name, "max_abs_diff": max_abs_diff(ref, got),
              "mean_abs_diff": float(diff.mean()) if diff.size else 0.0, "cosine": cosine,
              "max_abs_reference": float(np.abs(r).max()) if r.size else 0.0, "size": int(r.size)}
    if ref.ndim == 2 and ref.shape[1] > 1 and np.issubdtype(ref.dtype, np.floating):
        result["top1_agreement"] = float(np.mean(ref.argmax(axis=1) == got.argmax(axis=1)))
    return result


def validate(original: ModelSource, pruned: ModelSource, plan: dict | str | os.PathLike | None = None,
             oracle: bool = False, calib: str | os.PathLike | dict | None = None, rtol: float = 1e-4,
             atol: float | None = None, batch: int = 2, seed: int = 0, provider: str = "cpu") -> ValidationReport:
    """Compare ``pruned`` with ``original`` (or, with ``oracle``, with the original masked by ``plan``) on the
    same inputs (``calib`` arrays or random ones); passes when max |diff| <= atol, or when atol is None,
    <= rtol * max(1, max |reference|)."""
    exact = None
    reference = original
    if oracle:
        if plan is None:
            raise OnnxPruneError("oracle validation needs the plan (a plan JSON or {group id: units})")
        dg = analyse_model(original, options=AnalysisOptions())
        plan = load_plan(plan, dg) if not _is_group_plan(plan) else {int(g): list(u) for g, u in plan.items()}
        reference = masked_model(dg, plan)
        exact = all(dg.group(g).exact for g, units in plan.items() if units)
    ref_session = make_session(reference, provider, fuse=False)  # as oracle.compare: fusions may round apart
    got_session = make_session(pruned, provider, fuse=False)
    feeds = _feeds(ref_session, calib, batch, seed)
    refs = ref_session.run(None, feeds)
    gots = got_session.run(None, feeds)
    names = [o.name for o in ref_session.get_outputs()]
    outputs = [_compare_output(n, r, g) for n, r, g in zip(names, refs, gots)]
    scale = max([o.get("max_abs_reference", 0.0) for o in outputs] or [0.0])
    tolerance = float(atol) if atol is not None else rtol * max(1.0, scale)
    reason = ""
    if len(refs) != len(gots):
        reason = f"the reference has {len(refs)} outputs, the pruned model {len(gots)}"
    bad = [o for o in outputs if "shape_mismatch" in o]
    if bad:
        reason = f"output '{bad[0]['name']}' shape {bad[0]['shape_mismatch'][0]} became {bad[0]['shape_mismatch'][1]}"
    good = [o for o in outputs if "shape_mismatch" not in o]
    max_diff = max([o["max_abs_diff"] for o in good] or [float("inf") if reason else 0.0])
    total = sum(o["size"] for o in good)
    mean_diff = sum(o["mean_abs_diff"] * o["size"] for o in good) / total if total else 0.0
    cosine = min([o["cosine"] for o in good] or [0.0])
    top1 = [o["top1_agreement"] for o in good if "top1_agreement" in o]
    passed = not reason and bool(max_diff <= tolerance)
    return ValidationReport(passed=passed, max_abs_diff=max_diff, mean_abs_diff=mean_diff, cosine=cosine,
                            top1_agreement=min(top1) if top1 else None, oracle=oracle, tolerance=tolerance,
                            provider=got_session.get_providers()[0], exact=exact, outputs=outputs, reason=reason)


def _is_group_plan(plan) -> bool:
    """Whether ``plan`` is already {group id: units} rather than a plan JSON (path or parsed dict)."""
    return isinstance(plan, dict) and "groups" not in plan
