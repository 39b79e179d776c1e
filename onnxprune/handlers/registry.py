"""The handler registry: op type -> handler instance. Families register themselves when
``onnxprune.op_handlers`` is imported (the analysis layer does that); this module imports no family."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnxprune.handlers.base import OpHandler

_REGISTRY: dict[str, OpHandler] = {}


def register(*op_types: str):
    """Class decorator: register one handler instance for each ONNX op_type (default domain) given."""

    def wrap(cls: type[OpHandler]) -> type[OpHandler]:
        instance = cls()
        for op_type in op_types:
            if op_type in _REGISTRY:
                raise ValueError(f"op_type {op_type} registered twice ({_REGISTRY[op_type]!r}, {cls.__name__})")
            _REGISTRY[op_type] = instance
        return cls

    return wrap


def handler_for(node: gs.Node) -> OpHandler | None:
    """The handler registered for ``node``'s op_type, or None (custom domains never have one)."""
    if node.domain not in ("", "ai.onnx", None):
        return None
    return _REGISTRY.get(node.op)


def registered_op_types() -> list[str]:
    """Every op_type that has a handler, sorted."""
    return sorted(_REGISTRY)
