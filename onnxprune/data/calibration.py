"""Calibration data: model inputs read from the user's files and cut into batches the model accepts."""

from __future__ import annotations

import os
import warnings

import numpy as np

from onnxprune.errors import OnnxPruneError
from onnxprune.runtime import ModelSource, make_session, random_inputs

Feeds = dict[str, np.ndarray]


def load_calibration(path: str | os.PathLike) -> Feeds:
    """Read ``--calib FILE.npz``: one array per model input, named like the input."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: np.asarray(data[name]) for name in data.files}
    except (OSError, ValueError) as exc:
        raise OnnxPruneError(f"{path}: cannot read calibration arrays ({exc})") from None


def require_inputs(calib: Feeds | str | os.PathLike, names: list[str]) -> Feeds:
    """Calibration arrays (a dict, or an .npz path read by ``load_calibration``) with every input in ``names``;
    OnnxPruneError naming the missing ones."""
    feeds = load_calibration(calib) if isinstance(calib, (str, os.PathLike)) else dict(calib)
    missing = [name for name in names if name not in feeds]
    if missing:
        raise OnnxPruneError(f"calibration data lacks model inputs {missing} (it has {sorted(feeds)})")
    return feeds


def _batch_axis(shape: list) -> int | None:
    dynamic = [k for k, d in enumerate(shape) if not isinstance(d, int)]
    return dynamic[0] if dynamic else None


def calibration_batches(model: ModelSource, calib: Feeds | str | os.PathLike | None = None,
                        batch_size: int = 16, samples: int = 8, seed: int = 0) -> list[Feeds]:
    """Split calibration data into feed dicts of at most ``batch_size`` samples (along each input's first dynamic
    axis). Without data, ``samples`` random samples are generated from the input shapes, with a warning."""
    session = make_session(model, "cpu")
    inputs = session.get_inputs()
    if calib is None:
        warnings.warn("no calibration data given: using random inputs; real data (--calib FILE.npz) gives "
                      "better data-driven importance scores", stacklevel=2)
        return [random_inputs(session, batch=samples, seed=seed)]
    feeds = require_inputs(calib, [i.name for i in inputs])
    axes = {i.name: _batch_axis(i.shape) for i in inputs}
    lengths = {feeds[n].shape[a] for n, a in axes.items() if a is not None}
    if len(lengths) != 1 or any(a is None for a in axes.values()):
        return [{i.name: feeds[i.name] for i in inputs}]
    total = lengths.pop()
    return [{n: np.take(feeds[n], range(s, min(s + batch_size, total)), axis=a) for n, a in axes.items()}
            for s in range(0, total, batch_size)]
