"""Search: plans that meet a target (MACs, params, or an accuracy target on held-out data), found by measuring
pruned candidates; per-group ratios from measured sensitivity."""

from onnxprune.search.allocation import Allocation, AllocationStep, allocate
from onnxprune.search.evaluate import Evaluator, Measurement, Refine, split_batches
from onnxprune.search.metrics import AccuracyTarget, OutputMetrics, compare_outputs
from onnxprune.search.planning import drop_failing_groups, measure, plan_for_target, plan_pruning
from onnxprune.search.sensitivity import GroupSensitivity, measure_sensitivity
from onnxprune.search.targets import TargetResult, allocation_ladder, ratio_ladder, search_accuracy, search_macs

__all__ = ["AccuracyTarget", "Allocation", "AllocationStep", "Evaluator", "GroupSensitivity", "Measurement",
           "OutputMetrics", "Refine", "TargetResult", "allocate", "allocation_ladder", "compare_outputs",
           "drop_failing_groups", "measure", "measure_sensitivity", "plan_for_target", "plan_pruning",
           "ratio_ladder", "search_accuracy", "search_macs", "split_batches"]
