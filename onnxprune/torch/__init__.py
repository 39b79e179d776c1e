"""Back to PyTorch: apply an ONNX pruning plan to the torch module the model was exported from, so it can be
fine-tuned in the framework (``apply_plan``), and the ``apply-plan`` command that does it from the shell.

Requires torch (the ``models`` extra). Modules are found from the exported names: parameter names where the
exporter kept them, otherwise the node scopes both exporters write, with values checked (mapping.py)."""

from onnxprune.torch.attention import PrunedMultiheadAttention
from onnxprune.torch.command import apply_plan_command, load_module
from onnxprune.torch.mapping import Locator, Mapping, Target, TorchMappingError, torchscript_scope
from onnxprune.torch.prune import TorchPruneResult, apply_plan, apply_removed

__all__ = ["Locator", "Mapping", "PrunedMultiheadAttention", "Target", "TorchMappingError", "TorchPruneResult",
           "apply_plan", "apply_plan_command", "apply_removed", "load_module", "torchscript_scope"]
