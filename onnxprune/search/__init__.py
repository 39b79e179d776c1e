"""Search: plans that meet a target (MACs, params), found by measuring pruned candidates."""

from onnxprune.search.planning import drop_failing_groups, measure, plan_pruning

__all__ = ["drop_failing_groups", "measure", "plan_pruning"]
