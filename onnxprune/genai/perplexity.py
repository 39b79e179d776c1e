"""Perplexity of a decoder on a token sequence, run in onnxruntime with teacher forcing: the text is cut into
windows, each run as one prompt with an empty KV cache, and the next-token log-likelihoods of every position after
the first are averaged (exp of the mean negative log-likelihood)."""

from __future__ import annotations

import numpy as np

from onnxprune.genai.decoder import decoder_feeds
from onnxprune.runtime.sessions import ModelSource, make_session


def perplexity(model: ModelSource, ids: np.ndarray, head_size: int, window: int = 64,
               provider: str = "cpu") -> float:
    """exp(mean -log p(token | the tokens before it in its window)) over ``ids`` (1-D) cut into windows of
    ``window`` tokens (the last partial one dropped), with ``decoder_feeds``' empty caches."""
    count = len(ids) // window
    if count == 0:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than one window of {window}")
    batch = np.asarray(ids[:count * window]).reshape(count, window)
    session = make_session(model, provider, fuse=False)
    logits = session.run([session.get_outputs()[0].name], decoder_feeds(session, head_size, batch))[0]
    logits = logits[:, :-1].astype(np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    targets = batch[:, 1:]
    nll = -np.take_along_axis(log_probs, targets[..., None], axis=-1).mean()
    return float(np.exp(nll))
