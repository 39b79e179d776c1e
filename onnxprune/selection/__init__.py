"""Selection: which units of which groups go (ratios, global ranking, rounding, ignores), and the Plan."""

from onnxprune.selection.plan import Plan, PlanSettings, group_signature, read_plan_json
from onnxprune.selection.select import SelectionOptions, is_heads, is_hidden, is_query_heads, select

__all__ = ["Plan", "PlanSettings", "SelectionOptions", "group_signature", "is_heads", "is_hidden", "is_query_heads",
           "read_plan_json", "select"]
