"""Back to PyTorch: apply an ONNX pruning plan to the torch module the model was exported from, so it can be
fine-tuned in the framework (``apply_plan``), and the ``apply-plan`` command that does it from the shell.

Requires torch (the ``models`` extra). Modules are found from the exported names: parameter names where the
exporter kept them, otherwise the node scopes both exporters write, with values checked (mapping.py); one
initializer the exporter merged from equal parameters is every one of them. Size attributes of torch's modules are
updated by type (prune.py), those of custom modules by the int attribute equal to a sliced axis's old size, when
only one is (custom.py); constant biases the exporter dropped follow their weight (companions.py).

What cannot round-trip (refused with a TorchMappingError naming the module; the module is left untouched):
- positions removed *within* heads of an attention module that computes its softmax scale from ``head_dim`` at run
  time (models/ ``Attention``: no ``scale``/``scaling`` attribute): the ONNX graph keeps 1/sqrt(original head_dim);
- within-head removal on q/k but not v (or the reverse) in modules with one head size for q, k and v
  (transformers' BERT/ViT/GPT-2/LLaMA attention);
- within-head removal with rotary embeddings whose ``inv_freq`` the plan did not slice;
- a multi-layer ``nn.LSTM``/``nn.GRU`` whose layers the plan leaves with different hidden sizes (torch keeps one
  ``hidden_size``); LSTM ``proj_size``;
- a constant the torch module computes in forward (a sinusoidal embedding's frequencies) that the plan slices;
- torch code that splits or views by a width it reads from another tensor, or evenly (``chunk(2)``,
  ``view(b, 2, C // 2)``, ``split((self.c, self.c))``, ``view(b, c, h, w)`` with c from the input), where the plan
  makes those widths differ;
- a custom module whose pruned size equals two of its int attributes (``heads == out_channels``): ambiguous;
- a tensor with differing values that the plan did not reach (not an initializer of the export).
``nn.MultiheadAttention`` ties its input, q/k, v and output widths to one ``embed_dim``; a pruned one becomes a
``PrunedMultiheadAttention`` (same parameters and call) whose forward takes each width from its own weights."""

from onnxprune.torch.attention import PrunedMultiheadAttention
from onnxprune.torch.command import apply_plan_command, load_module
from onnxprune.torch.mapping import Locator, Mapping, Target, TorchMappingError, torchscript_scope
from onnxprune.torch.prune import TorchPruneResult, apply_plan, apply_removed

__all__ = ["Locator", "Mapping", "PrunedMultiheadAttention", "Target", "TorchMappingError", "TorchPruneResult",
           "apply_plan", "apply_plan_command", "apply_removed", "load_module", "torchscript_scope"]
