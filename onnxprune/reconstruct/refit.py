"""Solving one consumer's refit from its accumulated statistics (see ``gram``).

The refit matrix M (weights and bias) of the kept outputs minimises ``|y - a·Mᵀ|² + λ|W - W_pruned|²``:
``(AᵀA + λD) Mᵀ = AᵀY + λD·M_prunedᵀ``, D = identity without the bias entry (the bias is never pulled back),
y the original layer's outputs, a the pruned model's design rows. λ = alpha × the mean of AᵀA's diagonal, so alpha
is scale-free. The bias alone (method 'bias') keeps the pruned weights and sets b = mean(y) - W·mean(a): exact when
the removed channels are constant on the data. The squared error |y - a·Mᵀ|² of any M comes from the same sums.
"""

from __future__ import annotations

import numpy as np

from onnxprune.reconstruct.gram import GramAccumulator

METHODS = ("ridge", "bias")


def augmented(matrices: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """[g, out, f] weights and [g, out] biases as one [g, out, f+1] float64 matrix."""
    return np.concatenate([matrices, biases[..., None]], axis=-1).astype(np.float64)


def squared_error(gram: GramAccumulator, candidate: np.ndarray) -> tuple[float, float]:
    """(sum of squared errors of ``candidate`` [g, out, fa+1] against the original outputs, the outputs' energy
    around their mean) over the accumulated rows."""
    cross = np.einsum("gof,gfo->", candidate, gram.ay)
    fit = np.einsum("gof,gfh,goh->", candidate, gram.aa, candidate)
    energy = gram.yy - float(np.sum(gram.y_sum ** 2)) / max(gram.rows, 1)
    return max(gram.yy - 2 * float(cross) + float(fit), 0.0), max(energy, 0.0)


def solve(gram: GramAccumulator, pruned: np.ndarray, method: str = "ridge", alpha: float = 1e-3) -> np.ndarray:
    """The refit [g, out, fa+1] matrix (weights and bias) of one consumer; see the module docstring."""
    if method not in METHODS:
        raise ValueError(f"unknown reconstruction method {method!r}; choose from {', '.join(METHODS)}")
    rows = max(gram.rows, 1)
    if method == "bias":
        refit = pruned.copy()
        refit[:, :, -1] = gram.y_sum / rows - np.einsum("gof,gf->go", pruned[:, :, :-1], gram.aa[:, -1, :-1] / rows)
        return refit
    features = gram.aa.shape[-1] - 1
    diag = np.ones(features + 1)
    diag[-1] = 0.0
    scale = np.einsum("gii->g", gram.aa[:, :-1, :-1]) / max(features, 1)
    lam = alpha * np.where(scale > 0, scale, 1.0)
    lhs = gram.aa + lam[:, None, None] * np.diag(diag)[None]
    rhs = gram.ay + lam[:, None, None] * (diag[None, :, None] * pruned.transpose(0, 2, 1))
    try:
        solution = np.linalg.solve(lhs, rhs)
    except np.linalg.LinAlgError:
        solution = np.stack([np.linalg.lstsq(lhs[k], rhs[k], rcond=None)[0] for k in range(len(lhs))])
    return solution.transpose(0, 2, 1)
