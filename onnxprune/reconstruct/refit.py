"""Solving one consumer's refit from its Gram matrices.

With design rows a (pruned model, kept inputs, a trailing 1), b (original model, all inputs, a trailing 1), and the
original layer's kept outputs y = b·Moᵀ, the refit matrix M (weights and bias) minimises
``|y - a·Mᵀ|² + λ|W - W_pruned|²``: ``(AᵀA + λD) Mᵀ = AᵀB·Moᵀ + λD·M_prunedᵀ``, D = identity without the bias
entry (the bias is never pulled back). λ = alpha × the mean of AᵀA's diagonal, so alpha is scale-free.
The bias alone (method 'bias') keeps the pruned weights and sets b = mean(y) - W·mean(a): exact when the removed
channels are constant on the data. The squared error |y - a·Mᵀ|² of any M is computed from the same Grams.
"""

from __future__ import annotations

import numpy as np

from onnxprune.reconstruct.gram import GramAccumulator

METHODS = ("ridge", "bias")


def augmented(matrices: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """[g, out, f] weights and [g, out] biases as one [g, out, f+1] float64 matrix."""
    return np.concatenate([matrices, biases[..., None]], axis=-1).astype(np.float64)


def squared_error(gram: GramAccumulator, original: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(sum of squared errors of ``candidate`` [g, out, fa+1] against the original layer ``original``
    [g, out, fb+1], the outputs' energy around their mean) over the accumulated rows."""
    yy = np.einsum("gof,gfh,goh->", original, gram.bb, original)
    cross = np.einsum("gof,gfh,goh->", candidate, gram.ab, original)
    fit = np.einsum("gof,gfh,goh->", candidate, gram.aa, candidate)
    mean_y = np.einsum("gf,gof->go", gram.bb[:, -1, :], original) / max(gram.rows, 1)
    energy = yy - gram.rows * float(np.sum(mean_y ** 2))
    return max(float(yy - 2 * cross + fit), 0.0), max(float(energy), 0.0)


def solve(gram: GramAccumulator, original: np.ndarray, pruned: np.ndarray, method: str = "ridge",
          alpha: float = 1e-3) -> np.ndarray:
    """The refit [g, out, fa+1] matrix (weights and bias) of one consumer; see the module docstring."""
    if method not in METHODS:
        raise ValueError(f"unknown reconstruction method {method!r}; choose from {', '.join(METHODS)}")
    rows = max(gram.rows, 1)
    if method == "bias":
        mean_y = np.einsum("gf,gof->go", gram.bb[:, -1, :], original) / rows
        mean_a = gram.aa[:, -1, :-1] / rows
        refit = pruned.copy()
        refit[:, :, -1] = mean_y - np.einsum("gof,gf->go", pruned[:, :, :-1], mean_a)
        return refit
    features = gram.aa.shape[-1] - 1
    diag = np.ones(features + 1)
    diag[-1] = 0.0
    scale = np.einsum("gii->g", gram.aa[:, :-1, :-1]) / max(features, 1)
    lam = alpha * np.where(scale > 0, scale, 1.0)
    lhs = gram.aa + lam[:, None, None] * np.diag(diag)[None]
    rhs = np.matmul(gram.ab, original.transpose(0, 2, 1)) + lam[:, None, None] * (
        diag[None, :, None] * pruned.transpose(0, 2, 1))
    try:
        solution = np.linalg.solve(lhs, rhs)
    except np.linalg.LinAlgError:
        solution = np.stack([np.linalg.lstsq(lhs[k], rhs[k], rcond=None)[0] for k in range(len(lhs))])
    return solution.transpose(0, 2, 1)
