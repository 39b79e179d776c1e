"""Gram matrices of one consumer, accumulated chunk by chunk in float64: for design rows ``a`` of the pruned model
and ``b`` of the original (each with a trailing 1 for the bias), per group, AᵀA, AᵀB and BᵀB. Their size is
bounded by the features per group squared (Cin·k·k for a Conv), never by the number of samples."""

from __future__ import annotations

import numpy as np


class GramAccumulator:
    """Running AᵀA [g, fa+1, fa+1], AᵀB [g, fa+1, fb+1], BᵀB [g, fb+1, fb+1] and the row count."""

    def __init__(self, groups: int, features_a: int, features_b: int):
        self.aa = np.zeros((groups, features_a + 1, features_a + 1))
        self.ab = np.zeros((groups, features_a + 1, features_b + 1))
        self.bb = np.zeros((groups, features_b + 1, features_b + 1))
        self.rows = 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        """Add design rows ``a`` [rows, g, fa] (pruned model) and ``b`` [rows, g, fb] (original), row-aligned."""
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"design rows differ in number: {a.shape[0]} (pruned) vs {b.shape[0]} (original)")
        a, b = _augment(a), _augment(b)
        self.aa += np.matmul(a.transpose(0, 2, 1), a)
        self.ab += np.matmul(a.transpose(0, 2, 1), b)
        self.bb += np.matmul(b.transpose(0, 2, 1), b)
        self.rows += a.shape[1]


def _augment(rows: np.ndarray) -> np.ndarray:
    """[rows, g, f] -> [g, rows, f+1] float64 with a column of ones."""
    out = np.ones((rows.shape[1], rows.shape[0], rows.shape[2] + 1))
    out[:, :, :-1] = rows.transpose(1, 0, 2)
    return out
