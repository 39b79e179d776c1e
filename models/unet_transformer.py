"""A narrow Stable-Diffusion-style transformer block for onnxruntime's transformer optimizer (issue 10).

``UNetTransformerBlock``: tokens [B, S, D] plus a learned position table (the residual Add the fusion starts from);
LayerNorm → self-attention → residual; LayerNorm → cross-attention on a ``context`` [B, L, C] → residual; a linear
head. Attention is written as diffusers' ``Attention`` processor of the torch-1 era writes it: to_q/to_k/to_v
without bias, heads folded into the batch ([B, S, N*H] → [B*N, S, H]), scores · scale, softmax, back to [B, S, N*H],
to_out with bias. ``onnxruntime.transformers.optimizer.optimize_model(model_type="unet")`` fuses the self-attention
into MultiHeadAttention on a packed QKV query [B, S, N, 3, H] and the cross-attention into MultiHeadAttention on a
packed KV key [B, L, N, 2, H] (one MatMul plus a Reshape each).

Static shapes (batch 2, 6 tokens, 5 context tokens) keep the Reshape targets constant, as the fusion wants them.
Weights are random (seeded); tests compare pruned models with their mask oracle, not accuracies.
"""

from __future__ import annotations

import torch
from torch import nn

BATCH, TOKENS, CONTEXT_TOKENS, HIDDEN, CONTEXT, HEADS = 2, 6, 5, 16, 12, 4
INPUT_NAMES = ("x", "context")


class Attention(nn.Module):
    """Multi-head attention of queries from [B, S, HIDDEN] on keys/values from [B, n, ctx_dim] (diffusers' torch-1
    form: heads folded into the batch)."""

    def __init__(self, ctx_dim: int):
        super().__init__()
        self.to_q = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.to_k = nn.Linear(ctx_dim, HIDDEN, bias=False)
        self.to_v = nn.Linear(ctx_dim, HIDDEN, bias=False)
        self.to_out = nn.Linear(HIDDEN, HIDDEN)

    @staticmethod
    def _to_batch(t: torch.Tensor, n: int) -> torch.Tensor:
        head = HIDDEN // HEADS
        return t.reshape(BATCH, n, HEADS, head).permute(0, 2, 1, 3).reshape(BATCH * HEADS, n, head)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        head, n = HIDDEN // HEADS, ctx.shape[1]
        q, k, v = self._to_batch(self.to_q(x), TOKENS), self._to_batch(self.to_k(ctx), n), self._to_batch(
            self.to_v(ctx), n)
        probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * head ** -0.5, dim=-1)
        out = torch.matmul(probs, v).reshape(BATCH, HEADS, TOKENS, head).permute(0, 2, 1, 3)
        return self.to_out(out.reshape(BATCH, TOKENS, HIDDEN))


class UNetTransformerBlock(nn.Module):
    """Self-attention then cross-attention, each behind a LayerNorm with a residual, and a 3-way linear head."""

    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(TOKENS, HIDDEN))
        self.norm1, self.norm2 = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)
        self.attn1, self.attn2 = Attention(HIDDEN), Attention(CONTEXT)
        self.head = nn.Linear(HIDDEN, 3)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        h = x + self.pos
        n1 = self.norm1(h)
        h = h + self.attn1(n1, n1)
        h = h + self.attn2(self.norm2(h), context)
        return self.head(h)


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Example inputs: tokens [2, 6, 16] and context [2, 5, 12]."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, TOKENS, HIDDEN, generator=g), torch.randn(BATCH, CONTEXT_TOKENS, CONTEXT, generator=g)


def export(path: str, seed: int = 0) -> None:
    """Write the block (random weights from ``seed``) to ``path`` with the TorchScript exporter at opset 17."""
    torch.manual_seed(seed)
    model = UNetTransformerBlock().eval()
    torch.onnx.export(model, inputs(seed), path, input_names=list(INPUT_NAMES), output_names=["y"], opset_version=17,
                      dynamo=False)
