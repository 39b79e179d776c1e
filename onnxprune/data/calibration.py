"""Calibration data for the stages that only need batches (scoring, validation): read, checked, batched."""

from __future__ import annotations

import os
import warnings

from onnxprune.data.batching import prepare_calibration
from onnxprune.data.sources import Feeds, read_npz
from onnxprune.errors import CalibrationError
from onnxprune.runtime import ModelSource, example_inputs, make_session


def load_calibration(path: str | os.PathLike) -> Feeds:
    """Read ``--calib FILE.npz``: one array per model input, named like the input."""
    pieces = read_npz(path)
    if len(pieces) != 1:
        raise CalibrationError(f"{path}: holds {len(pieces)} variable-shape samples; read it with "
                               "onnxprune.data.prepare_calibration")
    return pieces[0]


def require_inputs(calib: Feeds | str | os.PathLike, names: list[str]) -> Feeds:
    """Calibration arrays (a dict, or an .npz path read by ``load_calibration``) with every input in ``names``;
    CalibrationError naming the missing ones."""
    feeds = load_calibration(calib) if isinstance(calib, (str, os.PathLike)) else dict(calib)
    missing = [name for name in names if name not in feeds]
    if missing:
        raise CalibrationError(f"calibration data lacks model inputs {missing} (it has {sorted(feeds)})")
    return feeds


def calibration_batches(model: ModelSource, calib=None, batch_size: int = 16, samples: int = 8,
                        seed: int = 0) -> list[Feeds]:
    """Every calibration sample (nothing held out), in batches the model accepts (see
    ``onnxprune.data.prepare_calibration`` for the sources read). Without data, ``samples`` random samples are
    generated from the input shapes, with a warning."""
    if calib is None:
        warnings.warn("no calibration data given: using random inputs; real data (--calib FILE.npz) gives "
                      "better data-driven importance scores", stacklevel=2)
        return [example_inputs(model, make_session(model, "cpu"), batch=samples, seed=seed)]
    return prepare_calibration(model, calib, holdout=0.0, batch_size=batch_size, seed=seed).fit
