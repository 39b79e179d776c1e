"""Report: the pruning report's tables (per group, per layer, per stage, blocked groups), the human table printed
on the terminal and the self-contained HTML page. The key reference is docs/report_format.md."""

from onnxprune.report.html import render_html, write_html
from onnxprune.report.tables import SCHEMA_VERSION, group_kind, report_tables
from onnxprune.report.terminal import format_groups_table

__all__ = ["SCHEMA_VERSION", "format_groups_table", "group_kind", "render_html", "report_tables", "write_html"]
