"""Model inputs made up when the user gave none: random feeds from the graph inputs' types and shapes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort


def random_inputs(session: ort.InferenceSession, batch: int = 2, seed: int = 0,
                  dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Random feeds for every input: normal floats, small non-negative ints; symbolic dims become ``batch``
    (or the value ``dims`` gives for that dim name)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) else (dims or {}).get(d, batch) for d in inp.shape]
        kind = inp.type
        if "float" in kind:
            dtype = np.float16 if "float16" in kind else (np.float64 if "double" in kind else np.float32)
            feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
        elif "int" in kind:
            dtype = np.int32 if "int32" in kind else np.int64
            feeds[inp.name] = rng.integers(0, 16, size=shape).astype(dtype)
        elif "bool" in kind:
            feeds[inp.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise ValueError(f"cannot make random data for input '{inp.name}' of type {kind}")
    return feeds
