"""Tiny random-config decoders built offline: a Hugging Face model saved with safetensors and a WordLevel
tokenizer, converted with onnxruntime-genai's model builder (fp32 or int4, CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

VOCAB = 80  # differs from every projection width: the builder takes any Linear with vocab outputs for lm_head
SIZES = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=3)


def save_tokenizer(out: Path) -> None:
    """A WordLevel tokenizer over VOCAB made-up words, saved as Hugging Face files."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "<pad>"] + [f"w{i}" for i in range(VOCAB - 4)]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            pad_token="<pad>").save_pretrained(out)


def save_hf_model(kind: str, out: Path, **config) -> Path:
    """A random LlamaForCausalLM ('llama'), Qwen2ForCausalLM ('qwen2') or Phi3ForCausalLM ('phi3') in ``out``;
    ``config`` adds to SIZES (``tie_word_embeddings=True``: lm_head shares the embedding table)."""
    import torch
    import transformers

    names = {"llama": "Llama", "qwen2": "Qwen2", "phi3": "Phi3"}[kind]
    torch.manual_seed(0)
    extra = {"original_max_position_embeddings": SIZES["max_position_embeddings"]} if kind == "phi3" else {}
    extra.update(config)
    config = getattr(transformers, f"{names}Config")(**SIZES, **extra)  # phi3: plain RoPE, not LongRoPE
    getattr(transformers, f"{names}ForCausalLM")(config).eval().save_pretrained(out, safe_serialization=True)
    save_tokenizer(out)
    return out


def build(hf_dir: Path, out: Path, precision: str, extra_options: tuple[str, ...] = ()) -> Path:
    """Convert with ``python -m onnxruntime_genai.models.builder`` on CPU (``extra_options``: KEY=VALUE pairs for
    its --extra_options, e.g. shared_embeddings=true); returns the model.onnx path."""
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir), "-o", str(out), "-p",
           precision, "-e", "cpu", "-c", str(out.parent / "cache")]
    if extra_options:
        cmd += ["--extra_options", *extra_options]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the builder failed: {done.stderr[-2000:]}")
    return out / "model.onnx"


PROSE = Path(__file__).parent / "data" / "prose.txt"


def char_vocab(text: str) -> list[str]:
    """Specials, the text's characters, then unused fillers up to VOCAB (the builder needs the vocab size to differ
    from every projection width)."""
    chars = sorted(set(text))
    words = ["<unk>", "<s>", "</s>", "<pad>", *chars]
    assert len(words) <= VOCAB, f"{len(words)} symbols do not fit VOCAB {VOCAB}"
    return words + [f"<unused{i}>" for i in range(VOCAB - len(words))]


def encode(text: str) -> np.ndarray:
    """The text as character ids of ``char_vocab``."""
    index = {w: i for i, w in enumerate(char_vocab(text))}
    return np.array([index[c] for c in text], dtype=np.int64)


def save_trained_llama(out: Path, text: str, steps: int = 250, window: int = 64, seed: int = 0,
                       kind: str = "llama") -> Path:
    """A LlamaForCausalLM (``kind`` 'qwen2': Qwen2ForCausalLM, q/k/v with biases) of SIZES, grouped-query (4 query
    heads, 2 KV heads), trained for ``steps`` Adam steps as a character-level language model on the first 80% of
    ``text`` (the rest is held out), with a character tokenizer saved beside it."""
    import torch
    import transformers
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    torch.manual_seed(seed)
    ids = torch.from_numpy(encode(text))[: int(len(text) * 0.8)]
    names = {"llama": "Llama", "qwen2": "Qwen2"}[kind]
    model = getattr(transformers, f"{names}ForCausalLM")(getattr(transformers, f"{names}Config")(**SIZES))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(steps):
        starts = rng.integers(0, len(ids) - window, size=16)
        batch = torch.stack([ids[s:s + window] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().save_pretrained(out, safe_serialization=True)
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(char_vocab(text))}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            pad_token="<pad>").save_pretrained(out)
    return out
