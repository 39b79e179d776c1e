"""Shape values: how ops carry the small integer vectors that state sizes (Shape -> Gather -> Concat -> Reshape).

One rule per op behaviour, registered by op type. The loader asks them to fold values that static shapes
determine (``static_value``) and to fill dims ONNX inference leaves unknown (``complete_shape``); analysis and
rewriting ask where an element of a shape vector comes from (``trace_shape_element``: a constant, a dim read by
Shape, or unknown); provenance asks which input axis a value-preserving op's output axis holds (``axis_source``).
These are not pruning handlers: they say nothing about channels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.ir.shape_view import ShapeView, is_static, tensor_shape
from onnxprune.ir.stand_ins import SizeOf, evaluate_with_stand_ins

Element = int | tuple | None


class ShapeValueRule:
    """What one op type does to shape values; every answer defaults to 'unknown' (None)."""

    def static_value(self, node: gs.Node, view: ShapeView) -> np.ndarray | None:
        """Output 0's value when static shapes alone determine it (Shape of known dims), else None."""
        return None

    def value_source(self, node: gs.Node, view: ShapeView, position: int) -> tuple[int, int] | None:
        """(input index, element) that element ``position`` of output 0 is copied from, or None."""
        return None

    def dim_source(self, node: gs.Node, view: ShapeView, position: int) -> int | None:
        """For ops that read shapes at run time (Shape): the axis of input 0 whose size is element ``position``."""
        return None

    def value_element(self, node: gs.Node, view: ShapeView, position: int,
                      element: Callable[[gs.Tensor, int], Element]) -> Element:
        """Element ``position`` of output 0 computed from the inputs' elements (resolved by ``element``)."""
        return None

    def complete_shape(self, node: gs.Node, view: ShapeView) -> list | None:
        """Output 0's shape where ONNX shape inference leaves dims unknown that the op determines, else None."""
        return None

    def axis_source(self, node: gs.Node, view: ShapeView) -> list[int] | None:
        """For ops that move values without changing them: for each axis of output 0, the axis of input 0 it
        holds; None otherwise."""
        return None


_RULES: dict[str, ShapeValueRule] = {}
_NO_RULE = ShapeValueRule()


def shape_rule(*op_types: str):
    """Class decorator: register one rule instance for each default-domain op type given."""

    def wrap(cls: type[ShapeValueRule]) -> type[ShapeValueRule]:
        instance = cls()
        for op_type in op_types:
            if op_type in _RULES:
                raise ValueError(f"shape-value rule for {op_type} registered twice")
            _RULES[op_type] = instance
        return cls

    return wrap


def rule_for(node: gs.Node) -> ShapeValueRule:
    """The rule for ``node`` (a rule that knows nothing for ops without one and for custom domains)."""
    if node.domain not in ("", "ai.onnx", None):
        return _NO_RULE
    return _RULES.get(node.op, _NO_RULE)


def trace_shape_element(view: ShapeView, tensor: gs.Tensor, position: int,
                        size_of: Callable[[gs.Tensor, int], int | None] | None = None) -> Element:
    """Where element ``position`` of a 1-D shape-like tensor comes from: an int (a constant), a (tensor, axis) pair
    (read at run time by Shape, so it follows that axis), or None (computed some other way).

    With ``size_of(tensor, axis) -> int | None``, dims read by Shape count as those sizes, so that values computed
    from them (GQA's ``Shape(k)[1] * n_rep``) evaluate to ints: pass the sizes after pruning to check what such a
    value will be at run time."""
    while True:
        values = view.const(tensor)
        if values is not None:
            return int(values.reshape(-1)[position])
        producer = tensor.inputs[0] if tensor.inputs else None
        if producer is None:
            return None
        rule, producer_view = rule_for(producer), ShapeView(producer)
        dim = rule.dim_source(producer, producer_view, position)
        if dim is not None:
            size = size_of(producer.inputs[0], dim) if size_of is not None else None
            return (producer.inputs[0], dim) if size is None else int(size)
        source = rule.value_source(producer, producer_view, position)
        if source is None:
            return rule.value_element(producer, producer_view, position,
                                      lambda t, p: trace_shape_element(view, t, p, size_of))
        tensor, position = producer.inputs[source[0]], source[1]


@shape_rule("Shape")
class ShapeRule(ShapeValueRule):
    """Shape(X, start, end): element p is the size of X's axis start + p."""

    def dim_source(self, node, view, position):
        rank = view.rank(view.input(0))
        start = int(view.attr("start", 0))
        return (start + rank if start < 0 else start) + position

    def static_value(self, node, view):
        dims = view.shape(view.input(0))[slice(int(view.attr("start", 0)), view.attr("end"))]
        return np.array(dims, dtype=np.int64) if all(map(is_static, dims)) else None


@shape_rule("Size")
class SizeRule(ShapeValueRule):
    """Size(X): the element count, static when every dim is."""

    def static_value(self, node, view):
        shape = view.shape(view.input(0))
        return np.array(np.prod(shape), dtype=np.int64) if all(map(is_static, shape)) else None


@shape_rule("Gather")
class GatherRule(ShapeValueRule):
    """Gather of a shape vector by constant indices."""

    def static_value(self, node, view):
        """Static dims picked out of Shape(X) (X's other dims may be dynamic): folded, so that arithmetic on them
        (GQA's ``num_kv_heads * n_rep``) folds too and stays rewritable."""
        data, indices = view.input(0), view.const(view.input(1))
        producer = data.inputs[0] if data.inputs else None
        if indices is None or producer is None or producer.op != "Shape" or int(view.attr("axis", 0)) != 0:
            return None
        inner = ShapeView(producer)
        dims = inner.shape(inner.input(0))[slice(int(inner.attr("start", 0)), inner.attr("end"))]
        picked = [dims[int(i)] for i in indices.reshape(-1)]
        if not all(map(is_static, picked)):
            return None
        return np.array(picked, dtype=np.int64).reshape(indices.shape)

    def value_source(self, node, view, position):
        """Element p comes from data element indices[p]."""
        indices = view.const(view.input(1))
        if indices is None or int(view.attr("axis", 0)) != 0 or view.rank(view.input(0)) != 1:
            return None
        return (0, int(np.asarray(indices).reshape(-1)[position]))


@shape_rule("Concat")
class ConcatRule(ShapeValueRule):
    """Concat of 1-D shape pieces: element p comes from the piece that covers p."""

    def value_source(self, node, view, position):
        offset = 0
        for k, part in enumerate(node.inputs):
            n = view.numel(part)
            if n is None:
                return None
            if position < offset + n:
                return (k, position - offset)
            offset += n
        return None


@shape_rule("Slice")
class SliceRule(ShapeValueRule):
    """A slice of a 1-D shape vector (TorchScript's flatten: Slice(Shape(x), 0, 2)): element p comes from
    element start + p * step."""

    def value_source(self, node, view, position):
        x = view.input(0)
        size = view.numel(x)
        if size is None or view.rank(x) != 1:
            return None
        if "starts" in node.attrs:  # opset < 10
            start, end, step = view.attr("starts")[0], view.attr("ends")[0], 1
        else:
            start, end = view.const(view.input(1)), view.const(view.input(2))
            step = view.const(view.input(4)) if view.input(4) is not None else np.ones(1, dtype=np.int64)
            if start is None or end is None or step is None:
                return None
            start, end, step = int(start.reshape(-1)[0]), int(end.reshape(-1)[0]), int(step.reshape(-1)[0])
        start, _, step = slice(start, end, step).indices(size)
        return (0, start + position * step)

    def complete_shape(self, node, view):
        """Bounds read from shapes (TorchScript's scatter_add slices its source to the index's shape,
        ``Slice(src, 0, Shape(index))``) or sliced dims that are symbolic: evaluated with stand-in sizes, so a slice
        to a tensor of the same dims keeps them and ``[0:1]`` of a symbolic dim is 1."""
        if "starts" in node.attrs:
            return None
        x, bounds = view.input(0), [view.input(k) for k in (1, 2, 3, 4)]
        if any(t is not None and view.numel(t) is None for t in bounds):
            return None
        x_shape = view.shape(x)
        axes = view.const(bounds[2]) if bounds[2] is not None else np.arange(view.numel(bounds[0]))
        if axes is None:
            return None
        axes = [int(a) % len(x_shape) for a in axes.reshape(-1)]

        def compute(size: SizeOf) -> list[int] | None:
            dims = [size(d) for d in x_shape]
            starts, ends = _elements(view, bounds[0], size), _elements(view, bounds[1], size)
            steps = _elements(view, bounds[3], size) if bounds[3] is not None else [1] * len(axes)
            if None in starts + ends + steps or 0 in steps:
                return None
            for axis, start, end, step in zip(axes, starts, ends, steps):
                dims[axis] = len(range(*slice(start, end, step).indices(dims[axis])))
            return dims
        return _named(node, view, evaluate_with_stand_ins(compute))


def _elements(view: ShapeView, tensor: gs.Tensor, size: SizeOf) -> list[int | None]:
    """Every element of a 1-D shape-like tensor, with dims read by Shape counted as ``size(dim)``."""
    def size_of(t: gs.Tensor, axis: int) -> int:
        shape = tensor_shape(t)
        return size(None if shape is None else shape[axis])

    values = [trace_shape_element(view, tensor, p, size_of) for p in range(view.numel(tensor))]
    return [v if isinstance(v, int) else None for v in values]


def _named(node: gs.Node, view: ShapeView, dims: list | None) -> list | None:
    """Stand-in results as a shape: dims that depend on symbols in some other way keep the name shape inference
    gave them, or get a fresh one."""
    if dims is None:
        return None
    old = view.output(0).shape
    return [d if d is not None else old[k] if old is not None and len(old) == len(dims) and isinstance(old[k], str)
            else f"{node.name}_dim{k}" for k, d in enumerate(dims)]


@shape_rule("Identity", "Cast")
class PassThroughRule(ShapeValueRule):
    """Identity and Cast keep every value and every axis."""

    def value_source(self, node, view, position):
        return (0, position)

    def axis_source(self, node, view):
        return list(range(view.rank(view.input(0))))


@shape_rule("Transpose")
class TransposeRule(ShapeValueRule):
    """Output axis i holds input axis perm[i] (perm defaults to reversing the axes)."""

    def axis_source(self, node, view):
        return [int(a) for a in (view.attr("perm") or reversed(range(view.rank(view.input(0)))))]


@shape_rule("Flatten", "Squeeze", "Unsqueeze")
class RegroupRule(ShapeValueRule):
    """Element order is unchanged, so shape values pass through."""

    def value_source(self, node, view, position):
        return (0, position)


@shape_rule("Where")
class WhereRule(ShapeValueRule):
    """Where on 1-D shape vectors with a known condition element copies that element from the branch it names
    (TorchScript writes ``expand(n, -1)`` as ``Where(Equal(s, -1), 1, s)``), so it can be rewritten there."""

    def value_source(self, node, view, position):
        if any(view.numel(t) is None or view.rank(t) > 1 for t in node.inputs):
            return None
        cond = trace_shape_element(view, node.inputs[0], position if view.numel(node.inputs[0]) > 1 else 0)
        if not isinstance(cond, int):
            return None
        branch = 1 if cond else 2
        return (branch, position if view.numel(node.inputs[branch]) > 1 else 0)


class _ArithmeticRule(ShapeValueRule):
    """Integer arithmetic on 1-D shape vectors, element by element (the rest needs constant elements)."""

    @staticmethod
    def compute(a: int, b: int) -> int | None:
        raise NotImplementedError

    def value_element(self, node, view, position, element):
        args = self.arguments(node, view, position, element)
        if args is None or not all(isinstance(a, int) for a in args):
            return None
        value = self.compute(*args)
        return None if value is None else int(value)

    @staticmethod
    def arguments(node, view, position, element) -> list | None:
        if len(node.inputs) != 2:
            return None
        args = []
        for tensor in node.inputs:
            n = view.numel(tensor)
            if n is None or (n != 1 and view.rank(tensor) != 1):
                return None
            args.append(element(tensor, position if n > 1 else 0))
        return args


@shape_rule("Equal")
class EqualRule(_ArithmeticRule):
    """Equal of a dim read by Shape with a negative constant is false (sizes are never negative)."""

    @staticmethod
    def compute(a, b):
        return a == b

    def value_element(self, node, view, position, element):
        args = self.arguments(node, view, position, element)
        if args is not None and any(isinstance(a, int) and a < 0 for a in args) and \
                any(isinstance(a, tuple) for a in args):
            return 0
        return super().value_element(node, view, position, element)


def _arithmetic(op_type: str, function: Callable[[int, int], int | None]) -> None:
    rule = type(f"{op_type}Rule", (_ArithmeticRule,), {"compute": staticmethod(function),
                                                      "__doc__": f"{op_type} of shape elements."})
    shape_rule(op_type)(rule)


for _op, _function in {"Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b,
                       "Div": lambda a, b: int(a / b) if b else None, "Max": max, "Min": min}.items():
    _arithmetic(_op, _function)


@shape_rule("Expand")
class ExpandRule(ShapeValueRule):
    """Broadcast X's shape with the shape input's elements where ONNX inference gives up (TorchScript writes
    ``expand(n, -1, -1)`` as a computed Where): a static X dim other than 1 wins, else the traced element does
    (a symbolic dim is taken not to be 1; dims that are 1 whatever the input, like TorchScript's ``[0:1]`` slice
    feeding ``index_add``'s Expand, are completed as 1 by SliceRule, so they do not lend their name)."""

    def complete_shape(self, node, view):
        x, shape, y = view.input(0), view.input(1), view.output(0)
        count = view.numel(shape)
        if count is None or y.shape is None or len(y.shape) != max(count, view.rank(x)):
            return None
        x_shape = view.shape(x)
        dims = []
        for axis in range(len(y.shape)):
            x_dim = x_shape[axis - len(y.shape) + len(x_shape)] if axis >= len(y.shape) - len(x_shape) else 1
            source = trace_shape_element(view, shape, axis - len(y.shape) + count) \
                if axis >= len(y.shape) - count else 1
            if isinstance(source, tuple):  # a dim read by Shape: its size (1 where Slice completion knows it is)
                source = view.shape(source[0])[source[1]]
            if is_static(x_dim) and x_dim != 1 or source == 1:
                dims.append(x_dim)
            elif isinstance(source, str) or is_static(source):  # X's dim is 1 or the same (a symbol is not 1)
                dims.append(source)
            else:
                dims.append(y.shape[axis])
        return dims


@shape_rule("Reshape")
class ReshapeRule(RegroupRule):
    """Reshape keeps element order (values pass through) and its target states the output shape."""

    def complete_shape(self, node, view):
        """Resolve each target entry (constant, 0 = copy, Shape(t)[p] = t's dim) and the -1 entry from the element
        count, matching symbolic dims on both sides (a -1 that takes up dynamic dims stays symbolic). ONNX inference
        names dims it loses track of 'unk__N' (after a broadcast with a mask of unknown shape, say): where the input's
        symbols differ from the target's only by such names and their counts agree, they are taken to be the same
        dims in another order (exporters build these targets from the shape of the tensor being reshaped or of the
        block's input)."""
        target = view.input(1)
        count = view.numel(target)
        if count is None or int(view.attr("allowzero", 0)):
            return None
        return self._by_names(node, view) or _named(node, view, evaluate_with_stand_ins(
            lambda size: self._evaluate(view, size)))

    @staticmethod
    def _evaluate(view: ShapeView, size: SizeOf) -> list[int] | None:
        """The output shape for X's dims (and dims read by Shape) given by ``size``: -1 from the element count."""
        x_shape = view.shape(view.input(0))
        dims = _elements(view, view.input(1), size)
        if None in dims:
            return None
        dims = [size(x_shape[k]) if d == 0 and k < len(x_shape) else d for k, d in enumerate(dims)]
        if dims.count(-1) > 1 or any(d < -1 for d in dims):
            return None
        if -1 in dims:
            known, total = int(np.prod([d for d in dims if d != -1])), int(np.prod([size(d) for d in x_shape]))
            if known <= 0 or total % known:
                return None
            dims[dims.index(-1)] = total // known
        return dims

    @staticmethod
    def _by_names(node, view) -> list | None:
        """Target entries resolved by name (symbolic dims read by Shape keep their names); None where that is not
        enough (stand-in sizes are tried next)."""
        x, target = view.input(0), view.input(1)
        count = view.numel(target)
        dims, rest = [], None
        for position in range(count):
            source = trace_shape_element(view, target, position)
            if isinstance(source, tuple):
                dims.append(view.shape(source[0])[source[1]])
            elif source == 0 and position < view.rank(x):
                dims.append(view.shape(x)[position])
            elif source == -1 and rest is None:
                rest = position
                dims.append(None)
            elif isinstance(source, int) and source > 0:
                dims.append(source)
            else:
                return None
        if rest is None:
            return dims
        symbols_in = sorted(str(d) for d in view.shape(x) if not is_static(d))
        symbols_out = sorted(str(d) for k, d in enumerate(dims) if k != rest and not is_static(d))
        if len(symbols_in) > len(symbols_out):  # -1 absorbs dynamic dims ([B, T, 32] -> [-1, 32]): stays symbolic
            old = view.output(0).shape
            dims[rest] = old[rest] if old is not None and isinstance(old[rest], str) else f"{node.name}_dim{rest}"
            return dims
        lost = [d for d in set(symbols_in) - set(symbols_out) if not d.startswith("unk__")]
        if symbols_in != symbols_out and (lost or len(symbols_in) != len(symbols_out)):
            return None
        known = int(np.prod([d for k, d in enumerate(dims) if k != rest and is_static(d)]))
        total = int(np.prod([d for d in view.shape(x) if is_static(d)]))
        if known == 0 or total % known:
            return None
        dims[rest] = total // known
        return dims
