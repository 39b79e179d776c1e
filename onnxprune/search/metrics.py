"""How far a pruned model's outputs are from the original's on the same inputs, and accuracy targets over that.

Per output the figures are those of the one comparer, ``onnxprune.validation.comparison.output_figures``, on the
outputs of every batch joined: **agreement** is the top-1 agreement of classifier-like outputs ([N, classes]
floats; the lowest over such outputs, None without one) and **drift** is the comparer's drift (1 - top-1 agreement
for classifier-like outputs, 1 - cosine for other float outputs; the largest over outputs), so ``--max-drift``
means the same in ``prune`` and ``validate``. Added here: **relative error** ``||got - ref|| / ||ref||`` of the
float outputs together, and **energy**, its square: errors that independent groups cause are nearly uncorrelated,
so their energies add, and sensitivity allocation (``onnxprune.search.allocation``) adds them. Energy is smooth
where agreement moves in steps of one sample, which is why allocation ranks by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from onnxprune.errors import OnnxPruneError
from onnxprune.validation.comparison import output_figures


@dataclass(frozen=True)
class OutputMetrics:
    """Comparison of a candidate's outputs with the original's (see module doc); ``samples``: rows compared."""

    agreement: float | None
    drift: float
    cosine: float
    relative_error: float
    samples: int

    @property
    def energy(self) -> float:
        """Squared relative error (additive over independent groups)."""
        return self.relative_error ** 2

    def to_dict(self) -> dict:
        """JSON-ready form with stable keys."""
        return {"top1_agreement": self.agreement, "drift": self.drift, "cosine": self.cosine,
                "relative_error": self.relative_error, "samples": self.samples}

    def format(self) -> str:
        """One short human phrase."""
        top1 = "" if self.agreement is None else f"top-1 agreement {self.agreement:.2%}, "
        return (f"{top1}drift {self.drift:.3g}, relative error {self.relative_error:.3g} on {self.samples} "
                f"samples")


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    if len(arrays) == 1:
        return arrays[0]
    try:
        return np.concatenate(arrays, axis=0)
    except ValueError:  # batches of different shapes (sequence lengths): compare them flat
        return np.concatenate([a.ravel() for a in arrays])


def compare_outputs(refs: Sequence[Sequence[np.ndarray]], gots: Sequence[Sequence[np.ndarray]],
                    names: Sequence[str] | None = None) -> OutputMetrics:
    """Metrics over batches: ``refs[b][k]`` / ``gots[b][k]`` are output k of the original / candidate on batch b.
    A changed shape or non-finite values where the original has finite ones count as drift inf, agreement 0."""
    if not refs:
        raise OnnxPruneError("no calibration batch to compare outputs on")
    agreements, drifts, cosines = [], [], []
    diff = norm = 0.0
    for k in range(len(refs[0])):
        ref_k = [np.asarray(batch[k]) for batch in refs]
        got_k = [np.asarray(batch[k]) for batch in gots]
        if any(r.shape != g.shape for r, g in zip(ref_k, got_k)):
            drifts.append(float("inf"))
            diff = float("inf")
            continue
        ref, got = _joined(ref_k), _joined(got_k)
        figures = output_figures(names[k] if names else f"output {k}", ref, got)
        drifts.append(figures["drift"])
        cosines.append(figures["cosine"])
        if "top1_agreement" in figures:
            agreements.append(0.0 if figures["drift"] == float("inf") else figures["top1_agreement"])
        if np.issubdtype(ref.dtype, np.floating):
            if figures["max_abs_diff"] == float("inf"):
                diff = float("inf")
            else:
                r64 = ref.astype(np.float64)
                diff += float(np.sum(np.square(got.astype(np.float64) - r64)))
                norm += float(np.sum(np.square(r64)))
    relative = float(np.sqrt(diff / norm)) if norm > 0 else (0.0 if diff == 0 else float("inf"))
    samples = sum(int(batch[0].shape[0]) if np.ndim(batch[0]) else 1 for batch in refs)
    return OutputMetrics(agreement=min(agreements) if agreements else None, drift=max(drifts, default=0.0),
                         cosine=min(cosines, default=1.0), relative_error=relative, samples=samples)


@dataclass(frozen=True)
class AccuracyTarget:
    """What a pruned model must keep on held-out data: top-1 agreement of classifier-like outputs of at least
    ``min_agreement`` and/or drift of at most ``max_drift`` (the comparer's drift, see module doc: on a classifier
    ``max_drift`` D asks for agreement >= 1 - D, on other outputs for cosine >= 1 - D)."""

    min_agreement: float | None = None
    max_drift: float | None = None

    def __post_init__(self) -> None:
        if self.min_agreement is None and self.max_drift is None:
            raise ValueError("an accuracy target needs min_agreement and/or max_drift")
        if self.min_agreement is not None and not 0.0 < self.min_agreement <= 1.0:
            raise ValueError(f"min_agreement is a fraction in (0, 1], got {self.min_agreement}")
        if self.max_drift is not None and not self.max_drift >= 0.0:
            raise ValueError(f"max_drift must be >= 0, got {self.max_drift}")

    def check(self, metrics: OutputMetrics) -> None:
        """OnnxPruneError when the target cannot be measured (min_agreement on a model with no classifier-like
        output)."""
        if self.min_agreement is not None and metrics.agreement is None:
            raise OnnxPruneError("min_agreement needs a classifier-like output ([N, classes] floats); this model "
                                 "has none: use max_drift instead")

    def holds(self, metrics: OutputMetrics) -> bool:
        """Whether ``metrics`` meet the target."""
        self.check(metrics)
        ok_agreement = self.min_agreement is None or metrics.agreement >= self.min_agreement
        return ok_agreement and (self.max_drift is None or metrics.drift <= self.max_drift)

    def describe(self) -> str:
        """The target in words."""
        parts = []
        if self.min_agreement is not None:
            parts.append(f"top-1 agreement >= {self.min_agreement:.2%}")
        if self.max_drift is not None:
            parts.append(f"drift <= {self.max_drift:.3g}")
        return " and ".join(parts)
