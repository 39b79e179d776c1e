"""A narrow BART/Whisper-style decoder cross-attention that reads its cached encoder keys/values (issue 10).

``CrossAttentionWithCache``: tokens [B, S, D] → LayerNorm → q_proj (scaled) → heads [B, N, S, H]; scores with the
cached key ``past_k`` [B, N, L, H] (a graph input), softmax, times the cached value ``past_v`` [B, N, L, H]; back to
[B, S, D], out_proj, residual, LayerNorm, a linear head. This is Hugging Face's cross-attention once the encoder's
K/V sit in the cache, and ``onnxruntime.transformers.optimizer.optimize_model(model_type="bart")`` with
``use_multi_head_attention`` fuses it into MultiHeadAttention with 4-D key/value (BNSH) taken straight from the
graph inputs, and a bias (the query's, zeros for key and value).

Static shapes (batch 2, 3 tokens, 5 cached tokens) keep the Reshape targets constant. Weights are random (seeded);
tests compare pruned models with their mask oracle, not accuracies.
"""

from __future__ import annotations

import torch
from torch import nn

BATCH, TOKENS, CACHED, HIDDEN, HEADS = 2, 3, 5, 16, 4
HEAD = HIDDEN // HEADS
INPUT_NAMES = ("x", "past_k", "past_v")


class CrossAttentionWithCache(nn.Module):
    """Queries from the tokens attend over cached keys/values given as [B, N, L, H] inputs."""

    def __init__(self):
        super().__init__()
        self.ln0, self.ln1 = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)
        self.q_proj, self.out_proj = nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, HIDDEN)
        self.head = nn.Linear(HIDDEN, 3)

    def forward(self, x: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor) -> torch.Tensor:
        h = self.ln0(x)
        q = (self.q_proj(h) * HEAD ** -0.5).reshape(BATCH, TOKENS, HEADS, HEAD).transpose(1, 2)
        probs = torch.softmax(torch.matmul(q, past_k.transpose(2, 3)), dim=-1)
        out = torch.matmul(probs, past_v).transpose(1, 2).reshape(BATCH, TOKENS, HIDDEN)
        return self.head(self.ln1(h + self.out_proj(out)))


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Example inputs: tokens [2, 3, 16], cached keys and values [2, 4, 5, 4]."""
    g = torch.Generator().manual_seed(seed)
    cache = (BATCH, HEADS, CACHED, HEAD)
    return (torch.randn(BATCH, TOKENS, HIDDEN, generator=g), torch.randn(*cache, generator=g),
            torch.randn(*cache, generator=g))


def export(path: str, seed: int = 0) -> None:
    """Write the block (random weights from ``seed``) to ``path`` with the TorchScript exporter at opset 17."""
    torch.manual_seed(seed)
    torch.onnx.export(CrossAttentionWithCache().eval(), inputs(seed), path, input_names=list(INPUT_NAMES),
                      output_names=["y"], opset_version=17, dynamo=False)
