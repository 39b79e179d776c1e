"""Sufficient statistics of one consumer, accumulated chunk by chunk in float64.

Per group, with design rows a of the pruned model (kept inputs and a trailing 1) and the original layer's outputs
y = b·Moᵀ (b: design rows of the original model's input, Mo: the original weights and bias of the kept outputs):
AᵀA [fa+1, fa+1], AᵀY [fa+1, out], the sum of y and of |y|². Their size is bounded by the features per group
squared (Cin·k·k for a Conv), never by the number of samples; y is computed chunk by chunk and never kept.
"""

from __future__ import annotations

import numpy as np


class GramAccumulator:
    """Running AᵀA, AᵀY, Σy and Σ|y|² for the target layer ``target`` ([g, out, fb+1], weights and bias)."""

    def __init__(self, target: np.ndarray, features_a: int):
        groups, outputs, _ = target.shape
        self.target = target
        self.aa = np.zeros((groups, features_a + 1, features_a + 1))
        self.ay = np.zeros((groups, features_a + 1, outputs))
        self.y_sum = np.zeros((groups, outputs))
        self.yy = 0.0
        self.rows = 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        """Add design rows ``a`` [rows, g, fa] (pruned model) and ``b`` [rows, g, fb] (original), row-aligned."""
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"design rows differ in number: {a.shape[0]} (pruned) vs {b.shape[0]} (original)")
        a, b = _augment(a), _augment(b)
        y = np.matmul(b, self.target.transpose(0, 2, 1))
        self.aa += np.matmul(a.transpose(0, 2, 1), a)
        self.ay += np.matmul(a.transpose(0, 2, 1), y)
        self.y_sum += y.sum(axis=1)
        self.yy += float(np.sum(y * y))
        self.rows += a.shape[1]


def _augment(rows: np.ndarray) -> np.ndarray:
    """[rows, g, f] -> [g, rows, f+1] float64 with a column of ones."""
    out = np.ones((rows.shape[1], rows.shape[0], rows.shape[2] + 1))
    out[:, :, :-1] = rows.transpose(1, 0, 2)
    return out
