"""Prove a pruned model: the checks every written file gets (``check_file``), and its outputs judged against the
right reference (``validate_plan``, ``validate``; the comparison itself is ``comparison.compare``).

With a plan, the reference follows from the plan: a mask-exact plan (every pruned group exact) is checked against
the mask oracle by tolerance; a plan with groups that are not mask-exact (normalisations over the channel axis,
recurrent state) cannot be, so it is checked against the original by the drift criterion, and the result says why.
A plan JSON records the settings it was analysed with, and the original is re-analysed with them.
"""

from __future__ import annotations

import os

from onnxprune.errors import OnnxPruneError
from onnxprune.ir.export import export_graph
from onnxprune.runtime import ModelSource
from onnxprune.selection.plan import Plan, PlanSettings, read_plan_json
from onnxprune.validation.checks import check_model
from onnxprune.validation.comparison import DEFAULT_MAX_DRIFT, DEFAULT_RTOL, Comparison, compare
from onnxprune.validation.oracle import masked_model

PlanSource = Plan | dict | str | os.PathLike


def check_file(path: str | os.PathLike) -> None:
    """onnx.checker with full_check on the file (by path, so models over 2 GB work) and an onnxruntime session;
    raises ValidationError naming the file."""
    check_model(path)


def resolve_plan(original: ModelSource, plan: PlanSource) -> Plan:
    """``plan`` bound to an analysis of ``original``: a bound Plan as it is; an unbound one, a plan JSON (path or
    parsed dict) or {group id: units} against ``original`` analysed with the plan's own settings (the defaults
    when it records none)."""
    if isinstance(plan, Plan):
        if plan.depgraph is not None:
            return plan
        settings = plan.settings or PlanSettings()
        return plan.bind(settings.analyse(original), settings)
    if isinstance(plan, dict) and "groups" not in plan:
        dg = PlanSettings().analyse(original)
        return Plan(groups={int(g): list(u) for g, u in plan.items()}).bind(dg)
    data = read_plan_json(plan)
    return Plan.from_dict(data, Plan.settings_of(data).analyse(original))


def oracle_note(plan: Plan) -> str:
    """Why the mask oracle does not apply to ``plan`` ('' when it does)."""
    if plan.refit:
        return ("not oracle-checkable: the kept weights were refit by reconstruction after pruning (prune checked "
                "the structural step against the mask oracle before the refit)")
    reasons = plan.inexact_reasons()
    if not reasons:
        return ""
    gid, why = next(iter(reasons.items()))
    return (f"not oracle-checkable: {len(reasons)} of {len(plan.pruned_groups())} pruned groups are not mask-exact "
            f"(groups through normalisations or recurrent state; group {gid}: {why[0] if why else 'not exact'})")


def validate_plan(plan: Plan, pruned: ModelSource, calib=None, *, provider: str = "auto",
                  rtol: float = DEFAULT_RTOL, atol: float | None = None, max_drift: float = DEFAULT_MAX_DRIFT,
                  batch: int | None = None, seed: int = 0, original: ModelSource | None = None,
                  runtime: str = "onnxruntime", shapes: dict[str, list] | None = None) -> Comparison:
    """Judge ``pruned`` (the result of ``plan``, which must be bound to its analysis) against the mask oracle when
    the plan is mask-exact, else against the original (``original``, default the analysed graph exported) by the
    drift criterion. Inputs: ``calib`` data or random samples (see ``compare``; ``shapes``: --input-shape).
    ``runtime="openvino"``: the pruned model runs on OpenVINO, the reference on onnxruntime."""
    dg = plan.depgraph
    if plan.exact and not plan.refit:  # PruneError when the plan is not bound
        return compare(masked_model(dg, plan.groups), pruned, oracle=True, calib=calib, rtol=rtol, atol=atol,
                       batch=batch, seed=seed, provider=provider, exact=True, runtime=runtime, shapes=shapes)
    reference = original if original is not None else export_graph(dg.graph, dg.loaded)
    return compare(reference, pruned, oracle=False, calib=calib, max_drift=max_drift, batch=batch, seed=seed,
                   provider=provider, note=oracle_note(plan), exact=False, runtime=runtime, shapes=shapes)


def validate(original: ModelSource, pruned: ModelSource, plan: PlanSource | None = None, oracle: bool = False,
             calib=None, rtol: float = DEFAULT_RTOL, atol: float | None = None,
             max_drift: float = DEFAULT_MAX_DRIFT, batch: int | None = None, seed: int = 0,
             provider: str = "auto", runtime: str = "onnxruntime", shapes: dict[str, list] | None = None,
             ) -> Comparison:
    """Compare ``pruned`` with ``original`` by the drift criterion or, with ``oracle``, check it against ``plan``
    (a Plan, a plan JSON path or dict, or {group id: units}; see ``validate_plan``: the mask oracle by tolerance
    for a mask-exact plan, the original by drift otherwise, saying that the oracle does not apply).
    ``runtime="openvino"`` runs ``pruned`` on OpenVINO's CPU plugin; the reference stays on onnxruntime."""
    if not oracle:
        return compare(original, pruned, oracle=False, calib=calib, max_drift=max_drift, batch=batch, seed=seed,
                       provider=provider, runtime=runtime, shapes=shapes)
    if plan is None:
        raise OnnxPruneError("oracle validation needs the plan (--plan FILE.json written by `prune --plan`)")
    return validate_plan(resolve_plan(original, plan), pruned, calib, provider=provider, rtol=rtol, atol=atol,
                         max_drift=max_drift, batch=batch, seed=seed, runtime=runtime, shapes=shapes)
