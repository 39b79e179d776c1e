"""Run ``onnxprune prune`` in-process and re-validate what it wrote: ``validate --oracle`` with the plan JSON must
re-analyse the original with the plan's own settings, find every group, and reach prune's own verdict with the same
reference and figures. Every prune the CLI and validation tests make goes through ``prune_and_revalidate``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from onnxprune.cli import main


@dataclass
class Pruned:
    """One prune run and its re-validation: the CLI results, the --report and --plan JSON, validate's JSON."""

    result: Result
    report: dict | None
    plan: dict | None
    revalidation: dict | None

    @property
    def validation(self) -> dict:
        """prune's own validation (from the report)."""
        return self.report["validation"]


def run_cli(*args) -> Result:
    """``onnxprune ARGS`` in-process."""
    return CliRunner().invoke(main, [str(a) for a in args])


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def prune_and_revalidate(source, output, *options) -> Pruned:
    """``prune SOURCE OUTPUT OPTIONS`` (adding --plan and --report beside OUTPUT unless given), then, when it wrote
    a model it validated, ``validate SOURCE OUTPUT --plan PLAN --oracle --json`` with prune's --max-drift,
    --provider and --calib: same exit status, verdict, reference and figures as prune's report, or the test fails."""
    args = [str(a) for a in options]
    out = Path(output)
    if "--plan" not in args:
        args += ["--plan", str(out.with_suffix(".plan.json"))]
    if "--report" not in args:
        args += ["--report", str(out.with_suffix(".report.json"))]
    result = run_cli("prune", source, output, *args)
    plan_path, report_path = Path(_option(args, "--plan")), Path(_option(args, "--report"))
    if result.exit_code not in (0, 1) or not out.exists():
        return Pruned(result, None, None, None)
    report, plan = json.loads(report_path.read_text()), json.loads(plan_path.read_text())
    assert plan["schema_version"] == 2 and all(g.get("signature") for g in plan["groups"]), plan
    if report["validation"].get("skipped"):
        return Pruned(result, report, plan, None)
    extra = [x for name in ("--max-drift", "--provider", "--calib") if _option(args, name)
             for x in (name, _option(args, name))]
    check = run_cli("validate", source, output, "--plan", plan_path, "--oracle", "--json", *extra)
    assert check.exit_code in (0, 1), check.output
    again = json.loads(check.stdout)
    own = report["validation"]
    assert (check.exit_code == 0) == again["passed"] == own["passed"], (own, again)
    assert (result.exit_code == 0) == own["passed"], result.output
    assert again["oracle"] == own["oracle"] == plan["exact"], (own, again, plan["exact"])
    for key in ("max_abs_diff", "drift", "cosine"):
        assert again[key] == pytest.approx(own[key], rel=1e-5, abs=1e-7), (key, own, again)
    if not plan["exact"]:
        assert "not oracle-checkable" in again["note"] and again["criterion"] == "drift"
    return Pruned(result, report, plan, again)
