"""Selection: which units of which groups go (ratios, global ranking, rounding, ignores), and the Plan."""

from onnxprune.selection.plan import Plan, load_plan
from onnxprune.selection.select import SelectionOptions, is_heads, is_hidden, select

__all__ = ["Plan", "SelectionOptions", "is_heads", "is_hidden", "load_plan", "select"]
