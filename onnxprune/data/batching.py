"""Calibration pieces checked against the model's inputs, cut into samples, split into a fitting part and a held-out
part, and batched the way the model accepts them (a model fixed at batch B gets exactly B samples at a time).

The sample axis of every input is the model's batch axis: its first symbolic dimension, or axis 0 when every
dimension is fixed. Samples of different shapes (variable sequence lengths) are never stacked together.

Whole-feed mode: some models' inputs share no sample axis (a graph network takes x [nodes, F] and edge_index [2,
edges]; one graph is one sample). Then every piece (a feed dict, one .npz of a directory) is one sample, checked
against the model but never cut or stacked, and the held-out part is a seeded fraction of the feeds. ``mode='auto'``
chooses it when the model gives its inputs' batch axes different symbolic dims (positions or names) and the data
disagree on the number of samples along them; ``mode='feeds'`` asks for it, ``mode='samples'`` never uses it.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from onnxprune.data.sources import Feeds, read_pieces
from onnxprune.errors import CalibrationError
from onnxprune.runtime import ModelSource, make_session

_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16, "tensor(int8)": np.int8,
          "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, dims (an int, or None where symbolic) and element type."""

    name: str
    shape: tuple
    dtype: np.dtype
    dims: tuple = ()  # the names onnxruntime gives the dims (a str where symbolic, else None); () when unknown

    @property
    def batch_axis(self) -> int:
        """The sample axis: the first symbolic dim, else 0."""
        return next((k for k, d in enumerate(self.shape) if d is None), 0)

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model requires, or None when the batch axis is symbolic."""
        return self.shape[self.batch_axis]

    def describe(self) -> str:
        """The shape as the model states it, e.g. [batch, 1, 8, 8]."""
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


def model_inputs(model: ModelSource) -> list[InputSpec]:
    """The graph inputs of ``model`` as onnxruntime sees them (initializers listed as inputs excluded)."""
    specs = []
    for inp in make_session(model, "cpu").get_inputs():
        if inp.type not in _TYPES:
            raise CalibrationError(f"model input '{inp.name}' has type {inp.type}, which calibration cannot feed")
        shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in inp.shape)
        if not shape:
            raise CalibrationError(f"model input '{inp.name}' is a scalar: calibration needs a sample axis")
        dims = tuple(d if isinstance(d, str) else None for d in inp.shape)
        specs.append(InputSpec(inp.name, shape, np.dtype(_TYPES[inp.type]), dims))
    return specs


MODES = ("auto", "samples", "feeds")


def distinct_batch_axes(specs: list[InputSpec]) -> bool:
    """Whether the model's inputs share no common batch dim: their symbolic batch axes sit at different positions
    or carry different names (onnxruntime's made-up ``unk__`` names do not count)."""
    symbolic = [s for s in specs if s.fixed_batch is None]
    if len(symbolic) < 2:
        return False
    names = {s.dims[s.batch_axis] for s in symbolic if s.dims and s.dims[s.batch_axis]
             and not s.dims[s.batch_axis].startswith("unk__")}
    return len({s.batch_axis for s in symbolic}) > 1 or len(names) > 1


def _counts(piece: Feeds, specs: list[InputSpec]) -> set[int]:
    return {piece[s.name].shape[s.batch_axis] for s in specs if s.name in piece and piece[s.name].ndim == len(s.shape)}


def check_piece(piece: Feeds, specs: list[InputSpec], where: str, whole: bool = False) -> Feeds:
    """The piece's arrays for the model's inputs, cast to their types; CalibrationError for a missing input, a wrong
    rank, size or kind of element, or (unless ``whole``: the piece is one whole feed) inputs disagreeing on the
    number of samples."""
    missing = [s.name for s in specs if s.name not in piece]
    if missing:
        raise CalibrationError(f"calibration data lacks model inputs {missing} ({where} has {sorted(piece)}); "
                               "name each array like the model input it feeds")
    checked, counts = {}, {}
    for spec in specs:
        array = piece[spec.name]
        if array.ndim != len(spec.shape):
            raise CalibrationError(f"input '{spec.name}' in {where} has shape {list(array.shape)} but the model "
                                   f"takes {spec.describe()}: give arrays in the model's layout, samples along "
                                   f"axis {spec.batch_axis}")
        for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
            if want is not None and axis != spec.batch_axis and want != got:
                raise CalibrationError(f"input '{spec.name}' in {where} has size {got} on axis {axis} but the "
                                       f"model takes {spec.describe()}; resize the data to fit")
        if _kind(array.dtype) != _kind(spec.dtype):
            raise CalibrationError(f"input '{spec.name}' in {where} holds {array.dtype} values but the model takes "
                                   f"{spec.dtype}; convert the data (e.g. scale images to floats) before saving")
        checked[spec.name] = array.astype(spec.dtype, copy=False)
        counts[spec.name] = array.shape[spec.batch_axis]
    if not whole and len(set(counts.values())) > 1:
        raise CalibrationError(f"inputs in {where} disagree on the number of samples along their batch axes "
                               f"({counts}); give every input the same samples (or, when the inputs share no "
                               "sample axis, one whole feed per sample: calib_mode='feeds')")
    return checked


def _kind(dtype: np.dtype) -> str:
    kind = np.dtype(dtype).kind
    return "int" if kind in "iu" else kind


def explode(piece: Feeds, specs: list[InputSpec]) -> list[Feeds]:
    """One feed dict per sample (views of the piece, batch axis kept with size 1)."""
    count = piece[specs[0].name].shape[specs[0].batch_axis]
    return [{s.name: np.take(piece[s.name], [k], axis=s.batch_axis) for s in specs} for k in range(count)]


def split_holdout(samples: list[Feeds], holdout: float, seed: int = 0) -> tuple[list[Feeds], list[Feeds]]:
    """(fit, held out): a seeded random ``holdout`` fraction of the samples (rounded, at least one when the
    fraction is positive and there are two samples or more) is held out; both parts keep the original order."""
    if not 0.0 <= holdout < 1.0:
        raise CalibrationError(f"holdout must be a fraction in [0, 1), got {holdout}")
    count = len(samples)
    held = 0 if holdout == 0 or count < 2 else min(count - 1, max(1, round(count * holdout)))
    chosen = set(np.random.default_rng(seed).permutation(count)[:held].tolist())
    return ([s for k, s in enumerate(samples) if k not in chosen], [s for k, s in enumerate(samples) if k in chosen])


def batch_samples(samples: list[Feeds], specs: list[InputSpec], batch_size: int) -> list[Feeds]:
    """Stack consecutive samples of equal shapes into batches of ``batch_size`` (exactly the model's batch size when
    it is fixed: left-over samples that cannot fill a batch are dropped with a warning)."""
    fixed = {s.fixed_batch for s in specs}
    if None in fixed:
        size, exact = batch_size, False
    elif len(fixed) == 1:
        size, exact = fixed.pop(), True
    else:
        raise CalibrationError(f"model inputs fix different batch sizes {[s.fixed_batch for s in specs]}")
    batches, dropped = [], 0
    for _, run in itertools.groupby(samples, key=lambda sample: tuple(sample[s.name].shape for s in specs)):
        run = list(run)
        for start in range(0, len(run), size):
            chunk = run[start:start + size]
            if exact and len(chunk) < size:
                dropped += len(chunk)
                continue
            batches.append({s.name: np.concatenate([c[s.name] for c in chunk], axis=s.batch_axis) for s in specs})
    if dropped:
        warnings.warn(f"{dropped} calibration samples left out: the model takes batches of exactly {size}",
                      stacklevel=3)
    return batches


@dataclass
class Calibration:
    """Calibration batches the model accepts: ``fit`` for fitting and scoring, ``holdout`` only for measuring."""

    fit: list[Feeds]
    holdout: list[Feeds] = field(default_factory=list)
    inputs: list[InputSpec] = field(default_factory=list)
    whole_feeds: bool = False  # every batch is one whole feed (one sample), e.g. one graph

    @property
    def fit_samples(self) -> int:
        """Number of samples in ``fit`` (feeds, in whole-feed mode)."""
        return len(self.fit) if self.whole_feeds else _count(self.fit, self.inputs)

    @property
    def holdout_samples(self) -> int:
        """Number of samples in ``holdout`` (feeds, in whole-feed mode)."""
        return len(self.holdout) if self.whole_feeds else _count(self.holdout, self.inputs)


def _count(batches: list[Feeds], specs: list[InputSpec]) -> int:
    return sum(b[specs[0].name].shape[specs[0].batch_axis] for b in batches) if specs else 0


def prepare_calibration(model: ModelSource, source, holdout: float = 0.2, batch_size: int = 16, seed: int = 0,
                        inputs: list[InputSpec] | None = None, mode: str = "auto") -> Calibration:
    """Read ``source`` (see ``onnxprune.data.sources.read_pieces``; a Calibration is returned as is), check it
    against ``model``'s inputs, hold out a seeded ``holdout`` fraction of the samples, and batch both parts the
    way the model accepts them. ``mode``: 'samples', 'feeds' (each piece is one whole sample, for inputs that share
    no sample axis) or 'auto' (module docstring). CalibrationError (one line, saying what to do) when the data does
    not fit."""
    if isinstance(source, Calibration):
        return source
    if mode not in MODES:
        raise CalibrationError(f"calibration mode must be one of {list(MODES)}, got '{mode}'")
    specs = inputs if inputs is not None else model_inputs(model)
    pieces = read_pieces(source)
    if mode == "feeds" or (mode == "auto" and distinct_batch_axes(specs)
                           and any(len(_counts(piece, specs)) > 1 for piece in pieces)):
        return _whole_feeds(pieces, specs, holdout, seed)
    samples = [s for k, piece in enumerate(pieces) for s in explode(check_piece(piece, specs, _where(k, pieces)),
                                                                    specs)]
    if not samples:
        raise CalibrationError("the calibration data holds no samples")
    fit, held = split_holdout(samples, holdout, seed)
    calibration = Calibration(batch_samples(fit, specs, batch_size), batch_samples(held, specs, batch_size), specs)
    if not calibration.fit:
        raise CalibrationError(f"no calibration batch the model can take: {len(samples)} samples, "
                               f"{math.ceil(len(samples) * holdout)} held out; give more samples")
    return calibration


def _whole_feeds(pieces: list[Feeds], specs: list[InputSpec], holdout: float, seed: int) -> Calibration:
    """Whole-feed mode: every piece checked and kept as one sample; a seeded fraction of them held out."""
    feeds = [check_piece(piece, specs, _where(k, pieces), whole=True) for k, piece in enumerate(pieces)]
    if not feeds:
        raise CalibrationError("the calibration data holds no feeds")
    fit, held = split_holdout(feeds, holdout, seed)
    return Calibration(fit, held, specs, whole_feeds=True)


def _where(k: int, pieces: list) -> str:
    return "the calibration data" if len(pieces) == 1 else f"calibration piece {k}"
