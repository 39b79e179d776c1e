"""Decoders exported by Hugging Face optimum's ONNX exporter, kept out of the main environment.

optimum-onnx 0.1.0 needs transformers < 4.58 while the test environment has transformers 5.x, so the exporter and
that transformers live in a separate target directory (``site()``: $ONNXPRUNE_OPTIMUM_SITE, default
``<repo>/.cache/optimum-site``) installed with ``--no-deps`` (``python -m tests.genai.optimum_export install``);
torch, numpy, onnx and onnxruntime still come from the main environment. The export runs in a child process with
that directory first on PYTHONPATH, offline, from a model saved here by the main transformers.

ORT-optimized variants go through ``onnxruntime.transformers.optimizer`` (model_type 'gpt2': its fusions that fit
a decoder are the RMSNorm ones, SimplifiedLayerNormalization and SkipSimplifiedLayerNormalization)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.genai.builders import SIZES, save_tokenizer

SITE_ENV = "ONNXPRUNE_OPTIMUM_SITE"
REPO = Path(__file__).resolve().parents[2]
# transformers 4.57 needs tokenizers <= 0.23.0 and huggingface_hub < 1.0: both shadow the main ones in the child only
PINS = ("optimum-onnx==0.1.0", "optimum==2.1.0", "transformers==4.57.6", "tokenizers==0.22.2",
        "huggingface_hub==0.36.2")
# what must come from the main environment: a copy of any of these in the site would shadow it in the child
MAIN_ONLY = ("torch", "numpy", "onnx", "onnxruntime", "safetensors")
KINDS = {"llama": "Llama", "qwen2": "Qwen2", "phi3": "Phi3"}


def site() -> Path:
    """The directory holding optimum's exporter and its transformers ($ONNXPRUNE_OPTIMUM_SITE or .cache/)."""
    return Path(os.environ.get(SITE_ENV) or REPO / ".cache" / "optimum-site")


def missing_reason() -> str | None:
    """Why the optimum exports cannot run here, or None when the site directory is installed."""
    path = site()
    if not (path / "optimum" / "exporters" / "onnx").is_dir() or not (path / "transformers").is_dir():
        return (f"optimum's exporter is not installed in {path} (set {SITE_ENV} or run "
                "`python -m tests.genai.optimum_export install`)")
    return None


def install(target: Path | None = None) -> Path:
    """pip install PINS into ``target`` (default ``site()``) without dependencies, then check that nothing there
    shadows a package of MAIN_ONLY."""
    target = target or site()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target",
                    str(target), *PINS], check=True)
    shadowing = [name for name in MAIN_ONLY if (target / name).exists()]
    if shadowing:
        raise RuntimeError(f"{target} holds {shadowing}, which must come from the main environment")
    return target


def save_hf_model(kind: str, out: Path) -> Path:
    """A random Llama (MHA: as many KV heads as query heads), Qwen2 (GQA, 2 KV heads for 4) or Phi-3 (GQA, packed
    qkv_proj and gate_up_proj) causal LM of builders.SIZES, saved with safetensors and a WordLevel tokenizer."""
    import torch
    import transformers

    sizes = dict(SIZES)
    if kind == "llama":
        sizes["num_key_value_heads"] = sizes["num_attention_heads"]
    if kind == "phi3":
        sizes["original_max_position_embeddings"] = sizes["max_position_embeddings"]  # plain RoPE, not LongRoPE
    torch.manual_seed(0)
    config = getattr(transformers, f"{KINDS[kind]}Config")(**sizes)
    getattr(transformers, f"{KINDS[kind]}ForCausalLM")(config).eval().save_pretrained(out, safe_serialization=True)
    save_tokenizer(out)
    return out


_EXPORT = """
import sys
from optimum.exporters.onnx import main_export
for source, out in zip(sys.argv[1::2], sys.argv[2::2]):
    main_export(source, out, task="text-generation-with-past", device="cpu")
"""


def export(pairs: list[tuple[Path, Path]], target: Path | None = None) -> list[Path]:
    """optimum's ``main_export`` (task text-generation-with-past) of each (Hugging Face dir, output dir) pair, all
    in one child process (importing the exporter costs ~15 s, an export of these tiny models ~2 s) with the site
    first on PYTHONPATH, offline, without TensorFlow; returns the model.onnx paths."""
    target = target or site()
    env = dict(os.environ, PYTHONPATH=str(target), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", USE_TF="0",
               USE_TORCH="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-c", _EXPORT, *(str(p) for pair in pairs for p in pair)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    models = [out / "model.onnx" for _, out in pairs]
    if done.returncode or not all(m.is_file() for m in models):
        raise RuntimeError(f"optimum's export failed: {done.stderr[-3000:]}")
    return models


def ort_optimize(model: Path, out: Path) -> Path:
    """``model`` through onnxruntime's transformer optimizer (model_type 'gpt2', builders.SIZES' heads and width),
    saved as ``out``."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(model), model_type="gpt2", num_heads=SIZES["num_attention_heads"],
                               hidden_size=SIZES["hidden_size"])
    optimized.save_model_to_file(str(out))
    return out


if __name__ == "__main__":  # python -m tests.genai.optimum_export install  (.ci/run)
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m tests.genai.optimum_export install")
    start = time.perf_counter()
    where = install()
    size = sum(p.stat().st_size for p in where.rglob("*") if p.is_file())
    print(f"optimum exporter in {where}: {size / 2**20:.0f} MiB in {time.perf_counter() - start:.0f} s")
