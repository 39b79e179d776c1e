"""The op-handler protocol: what one handler answers about one node.

DESIGN.md's three questions: which of the node's tensor axes are coupled and how their indices map (``analyse``),
how to rewrite the node's attributes and shape constants once indices are removed (``rewrite``), and, for the mask
oracle, which weights must be zeroed besides the masked activations (``oracle``); plus what scoring and statistics
need (``macs``, ``scale_inputs``, ``weight_inputs``). Constants (weights) that sit on a pruned axis are sliced by
the core, never by a handler. How shape *values* flow through ops is not a handler's business: see
``onnxprune.ir.shape_values``.

Rules every handler keeps (tests/handlers/test_handlers_protocol.py checks them): one class per op behaviour, so
a handler registered for several op types never asks ``node.op`` which one it has (shared code goes in a base
class whose subclasses set a class attribute or override one method); every graph edit goes through the context
(``set_attr``, ``set_input_values``, ``set_shape_value``, ``zero_input``), so a handler never edits other nodes;
and ``analyse``/``macs`` read no weight values (``ctx.is_constant`` asks constant-ness; ``ctx.const`` is for small
shape-like constants: axes, targets, indices, Resize scales, split sizes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import onnx_graphsurgeon as gs

from onnxprune.ir.shape_view import ShapeView

if TYPE_CHECKING:
    from onnxprune.handlers.contexts import AnalysisContext, OracleContext, RewriteContext


class OpHandler:
    """Base of every op handler. Subclasses override ``analyse`` and, where sizes live in the node, ``rewrite``."""

    # Whether ``analyse`` couples the inputs and outputs of the node's bodies (If/Loop/Scan): the analysis visits
    # every body's nodes, and blocks the boundary of bodies whose node's handler does not couple it.
    couples_bodies = False

    def analyse(self, node: gs.Node, ctx: AnalysisContext) -> None:
        """Declare couplings, non-channel axes, blocks and inexact axes of ``node``."""
        ctx.block_all(f"handler for {node.op} declares nothing")

    def rewrite(self, node: gs.Node, ctx: RewriteContext) -> None:
        """Update attributes and shape constants of ``node`` after indices were removed from its axes."""

    def oracle(self, node: gs.Node, ctx: OracleContext) -> None:
        """Zero the weights the mask oracle needs zeroed besides masked activations (recurrent state)."""

    def macs(self, node: gs.Node, ctx: ShapeView) -> int:
        """Multiply-accumulates of one run of ``node`` (0 for ops whose cost is negligible)."""
        return 0

    def scale_inputs(self, node: gs.Node) -> list[int]:
        """Input indices holding per-channel scales of a normalisation (gamma): the 'bn' importance criterion reads
        them, and magnitude criteria count them beside weights (biases and running statistics are never counted)."""
        return []

    def weight_inputs(self, node: gs.Node) -> list[int]:
        """Input indices holding weights that magnitude criteria count besides those with a producer axis (which
        are always weights): e.g. recurrent weights R, whose rows are not declared producers."""
        return []
