"""The handler protocol: the base class, the registry and the contexts handlers work through.

It never imports a handler family (``onnxprune.op_handlers`` imports this); the analysis layer imports the
families so that they register.
"""

from onnxprune.handlers.base import OpHandler
from onnxprune.handlers.contexts import AnalysisContext, OracleContext, RewriteContext
from onnxprune.handlers.registry import handler_for, register, registered_op_types
from onnxprune.ir.shape_view import ShapeView, UnknownShape

__all__ = ["AnalysisContext", "OpHandler", "OracleContext", "RewriteContext", "ShapeView", "UnknownShape",
           "handler_for", "register", "registered_op_types"]
