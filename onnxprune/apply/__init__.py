"""Apply: rewrite a copy of the graph by a plan (slice constants, rewrite sizes); nothing is checked or written."""

from onnxprune.apply.rewrite import PruneResult, apply_plan, prune_group

__all__ = ["PruneResult", "apply_plan", "prune_group"]
