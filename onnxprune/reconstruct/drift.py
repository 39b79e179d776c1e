"""How far a model's outputs are from the original's on held-out calibration batches (never used for fitting)."""

from __future__ import annotations

import numpy as np

from onnxprune.data import Feeds
from onnxprune.runtime import ModelSource, make_session


def output_drift(reference: ModelSource, candidate: ModelSource, batches: list[Feeds]) -> dict | None:
    """{'relative_error': |ref - got| / |ref| over every float output, 'top1_agreement': share of rows of 2-D
    outputs (classifier logits) whose argmax agrees, or None without such outputs, 'samples'}; None without
    batches."""
    if not batches:
        return None
    ref_session, got_session = make_session(reference, "cpu"), make_session(candidate, "cpu")
    diff = norm = 0.0
    agree = rows = 0
    for feeds in batches:
        for ref, got in zip(ref_session.run(None, feeds), got_session.run(None, feeds)):
            if not np.issubdtype(ref.dtype, np.floating):
                continue
            ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
            diff += float(np.sum((ref64 - got64) ** 2))
            norm += float(np.sum(ref64 ** 2))
            if ref.ndim == 2 and ref.shape[1] > 1:
                agree += int(np.sum(ref.argmax(axis=1) == got.argmax(axis=1)))
                rows += ref.shape[0]
    return {"relative_error": float(np.sqrt(diff / norm)) if norm > 0 else float(np.sqrt(diff)),
            "top1_agreement": agree / rows if rows else None, "batches": len(batches)}
