"""Read-only views of one node's tensors: shapes, static sizes, attributes and constant values.

Handlers and shape-value rules read nodes through a ``ShapeView``; shapes of constants come from their
(possibly lazy, external) values' metadata, so nothing here loads weight bytes except ``const``; ask
``is_constant`` when only constant-ness matters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_graphsurgeon as gs


class UnknownShape(Exception):
    """A tensor's rank is unknown; the caller blocks the node (analysis) or leaves it alone (folding)."""


def tensor_shape(tensor: gs.Tensor) -> list | None:
    """The tensor's shape as a list, or None when its rank is unknown (constants: from metadata, nothing loaded)."""
    if isinstance(tensor, gs.Constant):
        return list(tensor.shape)
    return None if tensor.shape is None else list(tensor.shape)


class ShapeView:
    """Read-only helpers on the tensors of one node."""

    def __init__(self, node: gs.Node, opset: int = 0):
        self.node = node
        self._opset = opset

    def shape(self, tensor: gs.Tensor) -> list:
        """The tensor's shape (ints, or strings/None for dynamic dims); raises UnknownShape if the rank is unknown."""
        shape = tensor_shape(tensor)
        if shape is None:
            raise UnknownShape(f"shape of tensor '{tensor.name}' is unknown")
        return shape

    def rank(self, tensor: gs.Tensor) -> int:
        """Number of dimensions of ``tensor``."""
        return len(self.shape(tensor))

    def size(self, tensor: gs.Tensor, axis: int) -> int | None:
        """Static size of one axis, or None if it is dynamic."""
        dim = self.shape(tensor)[axis]
        return dim if isinstance(dim, (int, np.integer)) and dim >= 0 else None

    @staticmethod
    def is_constant(tensor: gs.Tensor | None) -> bool:
        """Whether ``tensor`` is a constant (a weight or a folded value); reads no values, so it is the question to
        ask of weights during analysis."""
        return isinstance(tensor, gs.Constant)

    @staticmethod
    def const(tensor: gs.Tensor | None) -> np.ndarray | None:
        """Values of a constant tensor, or None for activations and missing optional inputs. This reads the
        values: call it for shape-like constants (axes, targets, indices), never to learn a weight's shape."""
        if isinstance(tensor, gs.Constant):
            return np.asarray(tensor.values)
        return None

    def input(self, i: int) -> gs.Tensor | None:
        """Input ``i`` of the node, or None when absent or an empty optional input."""
        inputs = self.node.inputs
        if i < len(inputs) and inputs[i].name != "":
            return inputs[i]
        return None

    def output(self, i: int) -> gs.Tensor | None:
        """Output ``i`` of the node, or None when absent or unused (empty name)."""
        outputs = self.node.outputs
        if i < len(outputs) and outputs[i].name != "":
            return outputs[i]
        return None

    def numel(self, tensor: gs.Tensor) -> int | None:
        """Number of elements of a tensor of static shape, else None."""
        shape = tensor_shape(tensor)
        if shape is None or not all(isinstance(d, (int, np.integer)) for d in shape):
            return None
        return int(np.prod(shape)) if shape else 1

    def attr(self, name: str, default: Any = None) -> Any:
        """A node attribute, or ``default``."""
        return self.node.attrs.get(name, default)

    def opset(self) -> int:
        """The default-domain opset the model imports (0 when the view was made without it)."""
        return self._opset

    def where(self) -> str:
        """"op node 'name'" for messages."""
        return f"{self.node.op} node '{self.node.name}'"


def is_static(dim) -> bool:
    """Whether a shape entry is a known non-negative integer."""
    return isinstance(dim, (int, np.integer)) and dim >= 0


def static_product(dims) -> int:
    """Product of the static entries of a shape (dynamic dims count as 1)."""
    return int(np.prod([d for d in dims if is_static(d)]))
