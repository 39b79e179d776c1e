"""``onnxprune report REPORT.json [--html FILE]``: print the per-group table of a saved ``--report`` JSON and write
its HTML page. A click command for the CLI to register (``main.add_command(report)``)."""

from __future__ import annotations

import json

import click

from onnxprune.report.html import write_html
from onnxprune.report.terminal import format_groups_table


def load_report(path: str) -> dict:
    """The report dict saved at ``path``; a ClickException naming the file when it is not a report."""
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{path} is not JSON ({exc.msg} at line {exc.lineno}); pass the file written "
                                   f"by 'onnxprune prune --report'") from None
    if not isinstance(report, dict) or "macs" not in report:
        raise click.ClickException(f"{path} is not an onnxprune report (no 'macs' key); pass the file written by "
                                   f"'onnxprune prune --report'")
    return report


@click.command("report")
@click.argument("report_file", metavar="REPORT.json", type=click.Path(exists=True, dir_okay=False))
@click.option("--html", "html_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the report as one self-contained HTML page (plots inline, no network needed).")
@click.option("--limit", type=int, default=40, show_default=True,
              help="Groups shown in the table (those with the largest MACs share); 0 shows all.")
def report(report_file: str, html_path: str | None, limit: int) -> None:
    """Print the per-group table of a saved prune report and optionally write its HTML page."""
    data = load_report(report_file)
    if "groups_table" not in data:
        click.echo(f"{report_file} has no per-group table (written by an older onnxprune); the page shows the "
                   f"summary only", err=True)
    else:
        click.echo(format_groups_table(data, limit=limit or None))
    if html_path:
        write_html(data, html_path)
        click.echo(f"wrote {html_path}", err=True)
