"""Narrow transformers written out op by op (the way exporters see them), and builders for ``transformers``-package
models from small configs with random weights (never downloaded).

Every attention reshapes the hidden axis into (heads, head_dim) with explicit sizes, ``x.view(b, t, heads, hd)``
and ``.reshape(b, t, heads * hd)``, with b and t read from the input's shape: the TorchScript exporter turns these
into Shape -> Gather -> Unsqueeze -> Concat targets whose head count and head size are constants, which pruning must
rewrite while batch and sequence stay dynamic.

- ``ViT``: Conv patch embedding (8x8 patches of a 32x32 image -> 16 tokens), class token concatenated, position
  embedding added, pre-LayerNorm blocks (MHA, GELU MLP), classifier on the class token.
- ``BertEncoder``: token + position embeddings (positions from ``arange(t)``), LayerNorm, post-LN blocks, padding
  mask from an ``attention_mask`` input added to the scores, Tanh pooler and classifier on the first token.
- ``GPTDecoder``: token + position embeddings, pre-LN blocks with a causal mask (``triu`` -> ``masked_fill``),
  final LayerNorm, LM head tied to the token embedding.
- ``LlamaDecoder``: RMSNorm written out (pow, mean, rsqrt, mul), rotary embeddings computed from positions
  (``rotate_half`` = slice, neg, concat), grouped-query attention (4 query heads sharing 2 key/value heads through
  the ``repeat_kv`` expand + reshape), SwiGLU MLP, untied LM head.

Export notes (torch 2.13, transformers 5.x, both exporters succeed for all eight models, opset 17 / 20):
- transformers' decoders given no attention mask look for packed sequences in the position ids with
  ``torch.diff``, which the TorchScript exporter cannot export ("aten::diff to ONNX opset version 17 is not
  supported"): ``HFOutput`` passes an all-ones mask.
- the dynamo exporter needs a forward with named positional parameters (``*inputs`` fails with "mismatch between
  the structure of inputs and dynamic_shapes").
- the dynamo exporter's optimiser merges initializers with equal values into one; freshly initialised models have
  many (zero biases, LayerNorm weights of ones), which would tie unrelated tensors: ``randomize_constant_parameters``.
- eager attention (``attn_implementation="eager"``) keeps the attention as MatMul/Softmax in both exporters.
- ViTs take images: dynamic batch only, the token count (17) follows from the image size.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

HIDDEN, HEADS, KV_HEADS, MLP, LAYERS, VOCAB, MAX_POSITIONS = 32, 4, 2, 64, 2, 100, 64
HEAD_DIM = HIDDEN // HEADS


class Attention(nn.Module):
    """Multi-head (or grouped-query, with ``kv_heads < heads``) attention with separate q/k/v projections; the
    attention width heads * head_dim need not be the model width ``dim`` (as after pruning one of them)."""

    def __init__(self, dim: int, heads: int, kv_heads: int | None = None, bias: bool = True, rotary: bool = False,
                 head_dim: int = HEAD_DIM):
        super().__init__()
        self.num_heads, self.num_kv_heads = heads, kv_heads or heads
        self.head_dim = head_dim
        self.rotary = rotary
        self.q = nn.Linear(dim, heads * self.head_dim, bias=bias)
        self.k = nn.Linear(dim, self.num_kv_heads * self.head_dim, bias=bias)
        self.v = nn.Linear(dim, self.num_kv_heads * self.head_dim, bias=bias)
        self.proj = nn.Linear(heads * self.head_dim, dim, bias=bias)

    def _split(self, x, heads: int):
        b, t = x.shape[0], x.shape[1]
        return x.view(b, t, heads, self.head_dim).transpose(1, 2)

    def forward(self, x, bias=None, rope=None):
        b, t = x.shape[0], x.shape[1]
        q, k, v = self._split(self.q(x), self.num_heads), self._split(self.k(x), self.num_kv_heads), \
            self._split(self.v(x), self.num_kv_heads)
        if rope is not None:
            cos, sin = rope
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, self.num_heads // self.num_kv_heads), repeat_kv(v, self.num_heads // self.num_kv_heads)
        scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(self.head_dim))
        if bias is not None:
            scores = scores + bias
        out = scores.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim))


def rotate_half(x):
    """[x1, x2] -> [-x2, x1] over the last axis (LLaMA's rotary embedding)."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def repeat_kv(x, n_rep: int):
    """[b, kv, t, hd] -> [b, kv * n_rep, t, hd], each kv head repeated n_rep times (as transformers writes it)."""
    if n_rep == 1:
        return x
    b, kv, t, hd = x.shape
    return x[:, :, None, :, :].expand(b, kv, n_rep, t, hd).reshape(b, kv * n_rep, t, hd)


class MLPBlock(nn.Sequential):
    """Linear -> GELU (erf) -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class PreNormBlock(nn.Module):
    """x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp: int, head_dim: int = HEAD_DIM):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), Attention(dim, heads, head_dim=head_dim)
        self.ln2, self.mlp = nn.LayerNorm(dim), MLPBlock(dim, mlp)

    def forward(self, x, bias=None):
        x = x + self.attn(self.ln1(x), bias)
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    """Images [N, 3, 32, 32] -> logits [N, 10]; 16 patch tokens + class token, width 32, 4 heads, 2 blocks."""

    def __init__(self, dim: int = HIDDEN, heads: int = HEADS, mlp: int = MLP, layers: int = LAYERS,
                 patch: int = 8, image: int = 32, num_classes: int = 10, head_dim: int = HEAD_DIM):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(PreNormBlock(dim, heads, mlp, head_dim) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


class BertEncoder(nn.Module):
    """(input_ids, attention_mask) [N, T] -> logits [N, 5]: embeddings + LN, post-LN blocks, pooler, classifier."""

    def __init__(self, dim: int = HIDDEN, heads: int = HEADS, mlp: int = MLP, layers: int = LAYERS,
                 vocab: int = VOCAB, num_classes: int = 5, head_dim: int = HEAD_DIM, pooler: int = HIDDEN,
                 positions: int = MAX_POSITIONS):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(positions, dim)
        self.ln = nn.LayerNorm(dim)
        self.attn = nn.ModuleList(Attention(dim, heads, head_dim=head_dim) for _ in range(layers))
        self.ln1 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.mlp = nn.ModuleList(MLPBlock(dim, mlp) for _ in range(layers))
        self.ln2 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.pooler, self.head = nn.Linear(dim, pooler), nn.Linear(pooler, num_classes)

    def forward(self, input_ids, attention_mask):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.ln(self.tok(input_ids) + self.pos(positions))
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for attn, ln1, mlp, ln2 in zip(self.attn, self.ln1, self.mlp, self.ln2):
            x = ln1(x + attn(x, bias))
            x = ln2(x + mlp(x))
        return self.head(torch.tanh(self.pooler(x[:, 0])))


class GPTDecoder(nn.Module):
    """input_ids [N, T] -> logits [N, T, vocab]: causal pre-LN blocks, final LN, LM head tied to the embedding."""

    def __init__(self, dim: int = HIDDEN, heads: int = HEADS, mlp: int = MLP, layers: int = LAYERS,
                 vocab: int = VOCAB, head_dim: int = HEAD_DIM, positions: int = MAX_POSITIONS):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(positions, dim)
        self.blocks = nn.ModuleList(PreNormBlock(dim, heads, mlp, head_dim) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, input_ids):
        t = input_ids.shape[1]
        x = self.tok(input_ids) + self.pos(torch.arange(t, device=input_ids.device))
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=input_ids.device), diagonal=1)
        bias = torch.zeros(t, t).masked_fill(causal, float("-inf"))
        for block in self.blocks:
            x = block(x, bias)
        return self.head(self.norm(x))


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * weight, as LLaMA writes it (decomposed in ONNX)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class LlamaBlock(nn.Module):
    """x + attn(RMSNorm(x)) with rotary GQA, then x + down(silu(gate(h)) * up(h)), h = RMSNorm(x)."""

    def __init__(self, dim: int, heads: int, kv_heads: int, mlp: int, head_dim: int = HEAD_DIM):
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.attn = Attention(dim, heads, kv_heads, bias=False, rotary=True, head_dim=head_dim)
        self.norm2 = RMSNorm(dim)
        self.gate, self.up = nn.Linear(dim, mlp, bias=False), nn.Linear(dim, mlp, bias=False)
        self.down = nn.Linear(mlp, dim, bias=False)

    def forward(self, x, bias, rope):
        x = x + self.attn(self.norm1(x), bias, rope)
        h = self.norm2(x)
        return x + self.down(nn.functional.silu(self.gate(h)) * self.up(h))


class LlamaDecoder(nn.Module):
    """input_ids [N, T] -> logits [N, T, vocab]: RMSNorm, RoPE, GQA (4 query / 2 key-value heads), SwiGLU."""

    def __init__(self, dim: int = HIDDEN, heads: int = HEADS, kv_heads: int = KV_HEADS, mlp: int = MLP,
                 layers: int = LAYERS, vocab: int = VOCAB, theta: float = 10000.0, head_dim: int = HEAD_DIM):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(LlamaBlock(dim, heads, kv_heads, mlp, head_dim) for _ in range(layers))
        self.norm, self.head = RMSNorm(dim), nn.Linear(dim, vocab, bias=False)
        self.register_buffer("inv_freq", 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim),
                             persistent=False)

    def forward(self, input_ids):
        t = input_ids.shape[1]
        positions = torch.arange(t, device=input_ids.device).float()
        freqs = positions[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        rope = emb.cos()[None, None], emb.sin()[None, None]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=input_ids.device), diagonal=1)
        bias = torch.zeros(t, t).masked_fill(causal, float("-inf"))
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x, bias, rope)
        return self.head(self.norm(x))


def randomize_constant_parameters(model: nn.Module, seed: int = 1) -> nn.Module:
    """Give every parameter that holds one repeated value (zero biases, LayerNorm/RMSNorm weights of ones, as
    freshly initialised models have) seeded noise around that value. A trained model has no such parameters, and
    they would be misleading here: the dynamo exporter merges identical initializers into one, which ties, say,
    every zero bias of the model to every other (coupled when pruned), and they hide errors in norm handling."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.numel() > 1 and bool((param == param.reshape(-1)[0]).all()):
                param.add_(torch.randn(param.shape, generator=g) * 0.1)
    return model


# ------------------------------------------------------------------------------------------- transformers package
class HFOutput(nn.Module):
    """Wrap a ``transformers`` model so that it takes positional tensors and returns one (``last_hidden_state`` or
    ``logits``). Decoders get an all-ones attention mask: without one, transformers looks for packed sequences in
    the position ids with ``torch.diff``, which the TorchScript exporter cannot export."""

    def __init__(self, model: nn.Module, input_names: tuple[str, ...]):
        super().__init__()
        self.model, self.input_names = model, input_names

    def forward(self, x, mask=None):
        feeds = dict(zip(self.input_names, (x, mask)))
        if self.input_names == ("input_ids",):
            feeds["attention_mask"] = torch.ones_like(x)
        out = self.model(**feeds)
        return out.logits if hasattr(out, "logits") else out.last_hidden_state


HF_INPUTS = {"bert": ("input_ids", "attention_mask"), "vit": ("pixel_values",), "gpt2": ("input_ids",),
             "llama": ("input_ids",)}


def hf_model(kind: str) -> nn.Module:
    """A ``transformers`` model from a small config with random weights (eager attention, no cache): ``bert``
    (BertModel), ``vit`` (ViTModel), ``gpt2`` (GPT2Model), ``llama`` (LlamaForCausalLM, 4 query / 2 kv heads).
    Built from config objects only; the hub is never contacted (HF_HUB_OFFLINE=1)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers as tf

    common = {"attn_implementation": "eager"}
    if kind == "bert":
        config = tf.BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                               num_attention_heads=HEADS, intermediate_size=MLP, max_position_embeddings=MAX_POSITIONS,
                               **common)
        model = tf.BertModel(config, add_pooling_layer=False)
    elif kind == "vit":
        config = tf.ViTConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                              intermediate_size=MLP, image_size=32, patch_size=8, num_channels=3, **common)
        model = tf.ViTModel(config, add_pooling_layer=False)
    elif kind == "gpt2":
        config = tf.GPT2Config(vocab_size=VOCAB, n_positions=MAX_POSITIONS, n_embd=HIDDEN, n_layer=LAYERS,
                               n_head=HEADS, n_inner=MLP, use_cache=False, bos_token_id=0, eos_token_id=0,
                               **common)
        model = tf.GPT2Model(config)
    elif kind == "llama":
        config = tf.LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=MLP,
                                num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                                max_position_embeddings=MAX_POSITIONS, use_cache=False, **common)
        model = tf.LlamaForCausalLM(config)
    else:
        raise ValueError(f"unknown transformers model {kind!r}")
    return HFOutput(model, HF_INPUTS[kind])
