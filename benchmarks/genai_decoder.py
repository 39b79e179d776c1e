"""Prune a random-config Llama-style decoder converted by onnxruntime-genai's model builder (fp32, CPU, external
data) with the CLI, and report wall time, peak RSS against the model's size on disk, and tokens/s before and after
in onnxruntime-genai.

    python -m benchmarks.genai_decoder [--size 150m|500m] [--dir /tmp/onnxprune_genai]
                                       [--results benchmarks/results_genai.md]

The Hugging Face model is a ``LlamaForCausalLM`` from a random config (seeded), saved with safetensors beside a
WordLevel tokenizer of made-up words (as tests/genai/builders.py does), converted with ``python -m
onnxruntime_genai.models.builder -p fp32 -e cpu``, then pruned by ``onnxprune prune --ratio 0.3 --heads-ratio 0.25
--no-hidden`` (MLP width 0.3, KV groups 0.25; validation on, as by default) in a child process whose peak RSS is
read from ``os.wait4``; its RSS is also sampled every 0.1 s and attributed to the stage its progress lines name.
Tokens/s: greedy search from a fixed 16-token prompt, a fixed number of new tokens (``--new-tokens``; the minimum
length is set so no end token stops it early), median of ``--repeats`` generations after one warm-up, original and
pruned alternately in one process; model loading is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.measure import emit, machine

ROOT = Path(__file__).resolve().parent.parent
# Llama-style sizes (head size 64, 4 KV groups) and a vocabulary that differs from every projection width.
SIZES = {
    "150m": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=12, num_attention_heads=16,
                 num_key_value_heads=4, vocab_size=8000),
    "500m": dict(hidden_size=1536, intermediate_size=4352, num_hidden_layers=18, num_attention_heads=24,
                 num_key_value_heads=4, vocab_size=16000),
}
PROMPT = [1] + list(range(10, 25))  # <s> and 15 made-up words


def build_hf(out: Path, sizes: dict) -> int:
    """Random LlamaForCausalLM (safetensors) and a WordLevel tokenizer over ``vocab_size`` words; its param count."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    torch.manual_seed(0)
    config = transformers.LlamaConfig(**sizes, max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
                                      pad_token_id=3, tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    words = ["<unk>", "<s>", "</s>", "<pad>"] + [f"w{i}" for i in range(sizes["vocab_size"] - 4)]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            pad_token="<pad>").save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def convert(hf_dir: Path, out: Path) -> float:
    """The builder, fp32 on CPU; returns seconds."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir), "-o", str(out), "-p", "fp32",
           "-e", "cpu", "-c", str(out.parent / "cache")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the builder failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def disk_bytes(directory: Path) -> int:
    """Size of model.onnx and its external data files in ``directory``."""
    return sum(p.stat().st_size for p in directory.iterdir() if p.name.startswith("model.onnx"))


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return 0


# Progress lines of `onnxprune prune` that end a stage, and the stage they end.
STAGES = (("analysed", "load + analyse"), ("pruning", "score + plan"), ("validating", "apply"))


def prune(src: Path, out: Path) -> tuple[float, int, dict[str, int], str]:
    """``onnxprune prune`` in a child process: (seconds, peak RSS in bytes from ``os.wait4``, {stage: highest
    sampled RSS}, its output). RSS is sampled every 0.1 s and attributed to the stage the child's progress lines
    say it is in (after the last one: validate + save + report)."""
    args = [sys.executable, "-m", "onnxprune.cli", "prune", str(src), str(out), "--ratio", "0.3", "--heads-ratio",
            "0.25", "--no-hidden"]
    start = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    stage = ["imports + load + analyse"]
    by_stage: dict[str, int] = {}
    stop = threading.Event()

    def sample():
        while not stop.wait(0.1):
            rss = _rss(child.pid)
            by_stage[stage[0]] = max(by_stage.get(stage[0], 0), rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    lines = []
    for line in child.stdout:
        lines.append(line)
        done = next((name for key, name in STAGES if line.lstrip("[ 0123456789.s]").startswith(key)), None)
        if done is not None:
            stage[0] = {"load + analyse": "score + plan", "score + plan": "apply",
                        "apply": "validate + save + report"}[done]
    stop.set()
    thread.join()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    output = "".join(lines)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"onnxprune failed ({code}):\n{output}")
    return seconds, usage.ru_maxrss * 1024, by_stage, output


def tokens_per_second(directories: list[Path], new_tokens: int, repeats: int) -> list[float]:
    """Median greedy-generation speed (new tokens / s) of each directory, alternating between them."""
    import onnxruntime_genai as og

    models = [og.Model(str(d)) for d in directories]

    def run(model) -> float:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(PROMPT) + new_tokens, min_length=len(PROMPT) + new_tokens,
                                  do_sample=False)
        generator = og.Generator(model, params)
        start = time.perf_counter()
        generator.append_tokens(np.array([PROMPT], dtype=np.int32))
        count = 0
        while not generator.is_done():
            generator.generate_next_token()
            count += 1
        seconds = time.perf_counter() - start
        assert count == new_tokens, f"{count} tokens generated, {new_tokens} asked"
        return new_tokens / seconds

    for model in models:
        run(model)  # warm-up
    speeds: list[list[float]] = [[] for _ in models]
    for _ in range(repeats):
        for k, model in enumerate(models):
            speeds[k].append(run(model))
    return [float(np.median(s)) for s in speeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="150m")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/onnxprune_genai"))
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results", default=None, help="Append the results block to this markdown file.")
    args = parser.parse_args()
    sizes = SIZES[args.size]
    root = args.dir / args.size
    hf, src_dir, out_dir = root / "hf", root / "onnx", root / "pruned"
    built = root / "built.json"
    if not built.exists():
        params = build_hf(hf, sizes)
        built.write_text(json.dumps({"params": params, "builder_seconds": convert(hf, src_dir)}))
    params, build_s = json.loads(built.read_text()).values()
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds, peak, by_stage, output = prune(src_dir / "model.onnx", out_dir / "model.onnx")
    print(output)
    size, out_size = disk_bytes(src_dir), disk_bytes(out_dir)
    speeds = tokens_per_second([src_dir, out_dir], args.new_tokens, args.repeats)
    before = json.loads((src_dir / "genai_config.json").read_text())["model"]["decoder"]
    after = json.loads((out_dir / "genai_config.json").read_text())["model"]["decoder"]
    files = sorted(p.name for p in src_dir.iterdir() if p.name.startswith("model.onnx"))
    validation = next((line.strip() for line in output.splitlines() if "validation:" in line), "(no line)")
    times = next((line.strip() for line in output.splitlines() if line.strip().startswith("time ")), "(no line)")
    stages = ", ".join(f"{name} {rss / 1e9:.2f} GB ({rss / size:.2f}x)" for name, rss in by_stage.items())
    m = machine()
    text = "\n".join([
        f"### Llama-style decoder, {args.size} ({params / 1e6:.0f} M parameters)",
        "",
        f"Machine: {m['cpu']} ({m['simd']}), {m['cores']} cores, load {m['load']}; onnxruntime {m['onnxruntime']}, "
        f"onnxprune {m['onnxprune']}.",
        f"Config: {json.dumps(sizes)}; builder fp32 CPU ({build_s:.0f} s), files {', '.join(files)}.",
        "Command: `onnxprune prune model.onnx pruned/model.onnx --ratio 0.3 --heads-ratio 0.25 --no-hidden` "
        "(validation on).",
        "",
        "| model on disk | prune wall time | peak RSS | RSS / model size | pruned on disk | heads (q/kv) | "
        "tokens/s before | tokens/s after | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {size / 1e9:.3f} GB | {seconds:.1f} s | {peak / 1e9:.3f} GB | {peak / size:.2f} | {out_size / 1e9:.3f} GB "
        f"| {before['num_attention_heads']}/{before['num_key_value_heads']} -> "
        f"{after['num_attention_heads']}/{after['num_key_value_heads']} | {speeds[0]:.1f} | {speeds[1]:.1f} | "
        f"{speeds[1] / speeds[0]:.2f}x |",
        "",
        f"Tokens/s: greedy, {len(PROMPT)}-token prompt, {args.new_tokens} new tokens, median of {args.repeats} "
        f"(after one warm-up), CPU, original and pruned alternately.",
        f"onnxprune's own lines: `{validation}`; `{times}`.",
        f"Highest RSS sampled (every 0.1 s) per stage of the prune process: {stages}.",
    ])
    emit(text, args.results)


if __name__ == "__main__":
    main()
