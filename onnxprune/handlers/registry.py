"""The handler registry: (domain, op type) -> handler instance. Families register themselves when
``onnxprune.op_handlers`` is imported (the analysis layer does that); this module imports no family.

The default ONNX domain is spelled "" (``ai.onnx`` and a missing domain mean the same); other domains (e.g.
``com.microsoft``, where onnxruntime's quantizer writes DynamicQuantizeLSTM) have handlers only where one is
registered with ``domain=``; every other op of a custom domain stays unsupported (opaque)."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnxprune.handlers.base import OpHandler

_REGISTRY: dict[tuple[str, str], OpHandler] = {}
_DEFAULT_DOMAINS = ("", "ai.onnx", None)


def _domain(domain: str | None) -> str:
    return "" if domain in _DEFAULT_DOMAINS else domain


def register(*op_types: str, domain: str = ""):
    """Class decorator: register one handler instance for each op_type given, in ``domain`` (default: ONNX's)."""

    def wrap(cls: type[OpHandler]) -> type[OpHandler]:
        instance = cls()
        for op_type in op_types:
            key = (_domain(domain), op_type)
            if key in _REGISTRY:
                raise ValueError(f"op_type {op_type} registered twice ({_REGISTRY[key]!r}, {cls.__name__})")
            _REGISTRY[key] = instance
        return cls

    return wrap


def handler_for(node: gs.Node) -> OpHandler | None:
    """The handler registered for ``node``'s (domain, op_type), or None (unknown domains never have one)."""
    return _REGISTRY.get((_domain(node.domain), node.op))


def registered_op_types() -> list[str]:
    """Every op_type that has a handler, sorted; those of other domains than ONNX's as 'domain::op_type'."""
    return sorted(op if not domain else f"{domain}::{op}" for domain, op in _REGISTRY)
