"""Deployed decoders as onnxruntime-genai runs them: which graph inputs/outputs are the KV cache (an internal loop
of the runtime, whose head axes may be pruned), the rewritten ``genai_config.json`` and the files copied beside the
output, and the oracle comparison of a decoder whose cache shapes changed."""

from onnxprune.genai.cache import cache_io_axes, genai_config_path
from onnxprune.genai.config import rewrite_genai_dir, runtime_sizes
from onnxprune.genai.decoder import compare_decoder, decoder_feeds, decoder_fidelity, validate_decoder, vocab_of
from onnxprune.genai.perplexity import perplexity

__all__ = ["cache_io_axes", "compare_decoder", "decoder_feeds", "decoder_fidelity", "genai_config_path",
           "perplexity", "rewrite_genai_dir", "runtime_sizes", "validate_decoder", "vocab_of"]
