"""The prune job end to end: analyse, plan (score, select), apply, check (checker and onnxruntime), validate (the
mask oracle for mask-exact plans, drift from the original otherwise), save, report; each stage is one call and none
checks or saves as a side effect of another. The CLI's ``prune`` and
``demo`` commands are thin layers over ``prune_file``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from onnxprune.analysis.stats import count_macs, count_params
from onnxprune.apply import apply_plan
from onnxprune.errors import OnnxPruneError
from onnxprune.ir.export import export_graph
from onnxprune.ir.saving import save_model
from onnxprune.runtime import available_provider
from onnxprune.search import plan_pruning
from onnxprune.selection import PlanSettings, SelectionOptions
from onnxprune.validation.checks import check_model
from onnxprune.validation.comparison import DEFAULT_MAX_DRIFT, Comparison
from onnxprune.validation.validate import validate_plan


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
    max_drift: float = DEFAULT_MAX_DRIFT  # plans that are not mask-exact: allowed drift from the original

    def settings(self) -> PlanSettings:
        """The analysis settings these options stand for (recorded in the plan, so validate can re-analyse)."""
        return PlanSettings(factor_policy=self.analysis_policy, input_shapes=dict(self.input_shapes),
                            initializer_inputs=self.initializer_inputs, heads_ratio=self.heads_ratio,
                            no_hidden=self.no_hidden)

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
    provider = available_provider(options.provider) if options.validate else None  # fails before any work
    settings = options.settings()
    dg = settings.analyse(source)
    progress(f"analysed {source}: {len(dg.channel_groups())} channel groups, {len(dg.prunable_groups())} "
             f"prunable; scoring with '{options.criterion}'")
    selection = SelectionOptions(ratio=options.ratio, global_ranking=options.global_ranking,
                                 max_ratio=options.max_ratio, round_to=options.round_to, ignore=options.ignore,
                                 target_macs=options.target_macs, target_params=options.target_params,
                                 seed=options.seed, heads_ratio=options.heads_ratio, no_hidden=options.no_hidden)
    plan = plan_pruning(dg, options.criterion, selection, calib=options.calib).bind(dg, settings)
    progress(f"pruning {len(plan.groups)} groups")
    result = apply_plan(dg, plan.groups)
    check_model(result.exported, original=lambda: export_graph(dg.graph, dg.loaded))
    validation = {"passed": None, "max_abs_diff": None, "oracle": False, "skipped": True}
    if options.validate and plan.groups:
        progress(f"validating on {provider}: " + ("against the mask oracle" if plan.exact else
                                                          "output drift from the original (not mask-exact)"))
        validation = validate_plan(plan, result.exported, options.calib, provider=options.provider,
                                   max_drift=options.max_drift).to_dict()
        validation["skipped"] = False
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
    if report_path:
        with open(report_path, "w") as f:
            json.dump(report, f, indent=2)
    if plan_path:
        plan.save(plan_path)
    return report


def format_report(report: dict) -> str:
    """The short human summary printed after pruning."""
    macs, params, groups = report["macs"], report["params"], report["groups"]
    validation = report["validation"]
    check = "skipped" if validation.get("skipped") else Comparison.from_dict(validation).summary()
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
