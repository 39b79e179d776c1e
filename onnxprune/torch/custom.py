"""Size attributes of custom modules: a module of the user's own class that holds a sliced tensor directly
(a GAT layer's ``att_src`` [1, heads, out_channels], a bias) often keeps the sizes it was built with as int
attributes and uses them in forward (``view(-1, self.heads, self.out_channels)``).

The rule: for each sliced axis of a tensor the module owns directly, an int attribute of the module equal to that
axis's old size is set to the new size, when exactly one attribute has that value. Two or more (``heads == 4`` and
``out_channels == 4``) is ambiguous: refused, naming them, rather than guessed. Attributes equal to no sliced size
are left alone (products such as ``heads * out_channels``, sizes read from tensors at run time).
Modules of torch's own classes are handled by prune.py and are not touched here.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from onnxprune.torch.mapping import TorchMappingError

_KNOWN = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm,
          nn.Embedding, nn.PReLU, nn.RNNBase, nn.MultiheadAttention)


def _int_attributes(m: nn.Module) -> dict[str, int]:
    return {k: v for k, v in vars(m).items() if not k.startswith("_") and type(v) is int}


def custom_size_changes(module: nn.Module, cuts: dict[str, dict[int, np.ndarray]],
                        shapes: dict[str, tuple[list[int], list[int]]]) -> dict[str, dict[str, tuple[int, int]]]:
    """{module name: {attribute: (old, new)}} for custom modules owning sliced tensors (``shapes``: {tensor: (old
    shape, new shape)}); TorchMappingError when a size matches several attributes or one attribute two sizes."""
    changes: dict[str, dict[str, tuple[int, int]]] = {}
    for name, m in module.named_modules():
        if isinstance(m, _KNOWN) or type(m).__module__.startswith(("torch.", "transformers.")):
            continue  # torch's classes (prune.py), transformers' attention (prune.py's head rules)
        owned = [t for t in list(m._parameters) + list(m._buffers) if f"{name}.{t}".lstrip(".") in cuts]
        attributes = _int_attributes(m)
        for tensor in owned:
            full = f"{name}.{tensor}".lstrip(".")
            old_shape, new_shape = shapes[full]
            for axis in cuts[full]:
                old, new = old_shape[axis], new_shape[axis]
                matches = [a for a, v in attributes.items() if v == old]
                if len(matches) > 1:
                    raise TorchMappingError(
                        f"{name or '<root>'} ({type(m).__name__}): {tensor} axis {axis} goes from {old} to {new}, "
                        f"and the attributes {', '.join(matches)} all equal {old}: which one holds this size is "
                        f"ambiguous; set it by hand after apply_plan (or give the attributes distinct values)")
                for attribute in matches:
                    previous = changes.setdefault(name, {}).get(attribute)
                    if previous is not None and previous[1] != new:
                        raise TorchMappingError(
                            f"{name or '<root>'} ({type(m).__name__}).{attribute}: tensors that it sizes go to "
                            f"{previous[1]} and {new} entries; one attribute cannot hold both")
                    changes[name][attribute] = (old, new)
    return {k: v for k, v in changes.items() if v}
