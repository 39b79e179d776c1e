"""Reading calibration data the way the ecosystem hands it over, into *pieces*: feed dicts in the model's layout.

Accepted: an .npz with one array per graph input (samples along the model's batch axis, axis 0 for nearly every
model); an .npz of variable-shape samples stored as ``<i>__<input name>`` (one sample or batch per i); a directory
of such files (read in name order); a dict of arrays; any iterable of feed dicts; onnxruntime's
``CalibrationDataReader`` (``get_next()`` until it returns None). Arrays whose name is no model input (labels kept
in the same file) are ignored later, when pieces are checked against the model.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from onnxprune.errors import CalibrationError

Feeds = dict[str, np.ndarray]
INDEXED = re.compile(r"(\d+)__(.+)")


def read_pieces(source) -> list[Feeds]:
    """Pieces of calibration data from ``source`` (path, directory, dict, iterable of dicts, CalibrationDataReader)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(path.glob("*.npz"))
            if not files:
                raise CalibrationError(f"{path}: no .npz files in this directory; write calibration arrays with "
                                       "numpy.savez (one array per model input)")
            return [piece for f in files for piece in read_npz(f)]
        return read_npz(path)
    if isinstance(source, Mapping):
        return [_as_feeds(source, "the calibration dict")]
    if hasattr(source, "get_next"):  # onnxruntime.quantization.CalibrationDataReader
        pieces = []
        while (feeds := source.get_next()) is not None:
            pieces.append(_as_feeds(feeds, f"CalibrationDataReader item {len(pieces)}"))
        return pieces
    if isinstance(source, Iterable):
        return [_as_feeds(feeds, f"feed dict {k}") for k, feeds in enumerate(source)]
    raise CalibrationError(f"cannot read calibration data from a {type(source).__name__}; give an .npz path, a "
                           "directory of .npz files, a dict of arrays, feed dicts or a CalibrationDataReader")


def read_npz(path: str | os.PathLike) -> list[Feeds]:
    """The pieces of one .npz: the whole file, or one piece per index ``i`` of ``<i>__<input>`` keys."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name]) for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CalibrationError(f"{path}: cannot read calibration arrays ({exc}); write them with numpy.savez") from None
    indexed = {key: INDEXED.fullmatch(key) for key in arrays}
    if not any(indexed.values()):
        return [arrays]
    plain = [key for key, match in indexed.items() if not match]
    if plain:
        raise CalibrationError(f"{path}: mixes indexed keys (<i>__<input>) with plain ones {plain[:3]}; use one "
                               "form per file")
    pieces: dict[int, Feeds] = defaultdict(dict)
    for key, match in indexed.items():
        pieces[int(match.group(1))][match.group(2)] = arrays[key]
    return [pieces[i] for i in sorted(pieces)]


def _as_feeds(feeds, where: str) -> Feeds:
    if not isinstance(feeds, Mapping):
        raise CalibrationError(f"{where} is a {type(feeds).__name__}, not a dict of input name -> array")
    return {str(name): np.asarray(value) for name, value in feeds.items()}
