"""The prune job end to end: analyse, score, select, prune, validate, save, report. The CLI's ``prune`` and
``demo`` commands are thin layers over ``prune_file``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from onnxprune.analysis import AnalysisOptions, DependencyGraph, analyse_model
from onnxprune.analysis.stats import count_macs, count_params
from onnxprune.apply import apply_plan
from onnxprune.data.calibration import calibration_batches
from onnxprune.errors import OnnxPruneError
from onnxprune.ir.export import export_graph
from onnxprune.ir.saving import save_model
from onnxprune.search import plan_pruning
from onnxprune.selection import SelectionOptions
from onnxprune.validation.checks import check_model
from onnxprune.validation.oracle import compare, masked_model


@dataclass
class PruneOptions:
    """Everything ``onnxprune prune`` accepts besides the two paths."""

    ratio: float = 0.5
    criterion: str = "l2"
    global_ranking: bool = False
    round_to: int | None = None
    max_ratio: float = 1.0
    ignore: tuple[str, ...] = ()
    calib: str | None = None
    input_shapes: dict = field(default_factory=dict)
    target_macs: float | None = None
    target_params: float | None = None
    seed: int = 0
    validate: bool = True
    provider: str = "auto"
    factor_policy: str = "largest"
    initializer_inputs: str = "auto"  # 'auto' | 'protect' | 'prune' (see onnxprune.loading.load)
    heads_ratio: float | None = None  # prune whole attention heads at this ratio (analysis policy 'leading')
    no_hidden: bool = False  # keep the hidden (residual) width: skip groups through LayerNorm/RMSNorm

    @property
    def analysis_policy(self) -> str:
        """The factor policy the analysis runs with: 'leading' (whole heads) when heads_ratio is given."""
        return "leading" if self.heads_ratio is not None else self.factor_policy


def check_output_path(source: str | os.PathLike, output: str | os.PathLike) -> None:
    """Refuse an output that is the input file or lies in a missing directory, before any work is done."""
    out = Path(output)
    if out.exists() and Path(source).exists() and out.resolve() == Path(source).resolve():
        raise OnnxPruneError(f"output {out} is the input file; choose another path")
    if not out.parent.is_dir():
        raise OnnxPruneError(f"output directory {out.parent} does not exist")


def _validate(dg: DependencyGraph, plan: dict, pruned, calib, provider: str) -> dict:
    exact = all(dg.group(gid).exact for gid in plan)
    reference = masked_model(dg, plan) if exact else export_graph(dg.graph, dg.loaded)
    feeds = calibration_batches(reference, calib, batch_size=2, samples=2)[0] if calib else None
    report = compare(reference, pruned, feeds=feeds)
    return {"passed": bool(report.passed) if exact else True, "max_abs_diff": report.max_abs_diff,
            "oracle": exact, "tolerance": report.tolerance,
            "note": "pruned == original with removed channels zeroed" if exact else
                    "groups through normalisations are not mask-exact: max_abs_diff is the output drift"}


def prune_file(source: str | os.PathLike, output: str | os.PathLike, options: PruneOptions,
               report_path: str | None = None, plan_path: str | None = None,
               progress: Callable[[str], None] = lambda message: None) -> dict:
    """Prune ``source`` into ``output`` (written atomically; the input is never touched) and return the report
    dict (the ``--report`` JSON)."""
    start = time.perf_counter()
    check_output_path(source, output)
    for extra in (report_path, plan_path):
        if extra and not Path(extra).parent.is_dir():
            raise OnnxPruneError(f"directory {Path(extra).parent} of {extra} does not exist")
    dg = analyse_model(source, input_shapes=options.input_shapes or None,
                       options=AnalysisOptions(factor_policy=options.analysis_policy),
                       initializer_inputs=options.initializer_inputs)
    progress(f"analysed {source}: {len(dg.channel_groups())} channel groups, {len(dg.prunable_groups())} "
             f"prunable; scoring with '{options.criterion}'")
    selection = SelectionOptions(ratio=options.ratio, global_ranking=options.global_ranking,
                                 max_ratio=options.max_ratio, round_to=options.round_to, ignore=options.ignore,
                                 target_macs=options.target_macs, target_params=options.target_params,
                                 seed=options.seed, heads_ratio=options.heads_ratio, no_hidden=options.no_hidden)
    plan = plan_pruning(dg, options.criterion, selection, calib=options.calib)
    progress(f"pruning {len(plan.groups)} groups")
    result = apply_plan(dg, plan.groups)
    check_model(result.exported, original=lambda: export_graph(dg.graph, dg.loaded))
    validation = {"passed": None, "max_abs_diff": None, "oracle": False, "skipped": True}
    if options.validate and plan.groups:
        progress("validating against the mask oracle" if all(dg.group(g).exact for g in plan.groups)
                 else "validating (output drift)")
        validation = _validate(dg, plan.groups, result.exported, options.calib, options.provider)
    save_model(result.exported, output, source=source)
    pruned_graph = result.graph
    report = {
        "input": str(source), "output": str(output), "criterion": plan.criterion, "ratio": plan.ratio,
        "macs": {"before": count_macs(dg.graph), "after": count_macs(pruned_graph)},
        "params": {"before": count_params(dg.graph), "after": count_params(pruned_graph)},
        "groups": {"total": len(dg.channel_groups()), "pruned": len(plan.groups),
                   "blocked": len(dg.channel_groups()) - len(dg.prunable_groups())},
        "channels_removed": int(sum(len(units) for units in plan.groups.values())),
        "validation": validation, "notes": plan.notes, "seconds": round(time.perf_counter() - start, 3),
    }
    for path, payload in ((report_path, report), (plan_path, plan.to_dict(dg) if plan_path else None)):
        if path:
            with open(path, "w") as f:
                json.dump(payload, f, indent=2)
    return report


def format_report(report: dict) -> str:
    """The short human summary printed after pruning."""
    macs, params, groups = report["macs"], report["params"], report["groups"]
    validation = report["validation"]
    if validation.get("skipped"):
        check = "skipped"
    else:
        kind = "mask oracle" if validation["oracle"] else "output drift"
        check = (f"{'PASSED' if validation['passed'] else 'FAILED'} ({kind}, max abs diff "
                 f"{validation['max_abs_diff']:.2e})")
    return "\n".join([
        f"pruned {report['input']} -> {report['output']} ({report['criterion']}, ratio {report['ratio']:.2f})",
        f"  MACs    {macs['before']:>14,} -> {macs['after']:>14,}  ({macs['after'] / max(macs['before'], 1):.1%})",
        f"  params  {params['before']:>14,} -> {params['after']:>14,}  "
        f"({params['after'] / max(params['before'], 1):.1%})",
        f"  groups  {groups['pruned']} pruned of {groups['total']} ({groups['blocked']} blocked), "
        f"{report['channels_removed']} channels removed",
        f"  checker and onnxruntime: passed; validation: {check}",
        f"  time    {report['seconds']:.2f} s",
    ])
