"""The prune job end to end: analyse, plan (score, select; or search an accuracy target), apply, check (checker
and onnxruntime), validate the structural step (the mask oracle for mask-exact plans, drift from the original
otherwise), reconstruct on calibration data (refit the layers that read pruned channels), measure the final drift on
held-out data, save, report; each stage is one call and none checks or saves as a side effect of another. The
CLI's ``prune`` and ``demo`` commands are thin layers over ``prune_file``."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from onnxprune.analysis.stats import count_macs, count_params, macs_report
from onnxprune.apply import PruneResult, apply_plan
from onnxprune.data import prepare_calibration
from onnxprune.errors import OnnxPruneError
from onnxprune.genai import decoder_fidelity, validate_decoder
from onnxprune.ir.export import export_graph
from onnxprune.ir.saving import save_model
from onnxprune.reconstruct import ReconstructOptions, reconstruct
from onnxprune.reconstruct.sequential import pruned_feeds
from onnxprune.report import report_tables, write_html
from onnxprune.runtime import available_provider
from onnxprune.search import plan_for_target, plan_pruning
from onnxprune.search.metrics import AccuracyTarget
from onnxprune.selection import Plan, PlanSettings, SelectionOptions, is_heads, is_query_heads
from onnxprune.selection.select import ignored_groups
from onnxprune.validation.checks import check_model
from onnxprune.validation.comparison import DEFAULT_MAX_DRIFT, Comparison, compare
from onnxprune.validation.validate import validate_plan

DEFAULT_RATIO = 0.5


@dataclass
class PruneOptions:
    """Everything ``onnxprune prune`` accepts besides the two paths."""

    ratio: float | None = None  # None: DEFAULT_RATIO, or searched when there is an accuracy target
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
    query_heads_ratio: float | None = None  # then query heads inside each KV group, in a second pass (prune_passes)
    attention_units: str = "kv_groups"  # GroupQueryAttention's unit in this pass: 'kv_groups' | 'query_heads'
    no_hidden: bool = False  # keep the hidden (residual) width: skip groups through LayerNorm/RMSNorm
    max_drift: float | None = None  # allowed drift from the original (None: DEFAULT_MAX_DRIFT, and no target)
    min_agreement: float | None = None  # accuracy target: top-1 agreement on held-out calibration data
    reconstruct: bool | None = None  # refit after pruning; None: on when calibration data is given
    calib_holdout: float = 0.2  # fraction of the calibration samples only ever used to measure
    calib_mode: str = "auto"  # 'samples', 'feeds' (one whole feed per sample: graphs) or 'auto' (data.batching)
    allocate: str = "uniform"  # 'uniform' ratios, or per-group ratios from measured 'sensitivity'
    optimize: str = "macs"  # what allocation saves first: 'macs' or measured 'latency'
    html: str | None = None  # write the report as one self-contained HTML page
    allowed_io_axes: tuple = ()  # graph input/output axes that may be pruned (ChannelAxis; e.g. KV-cache heads)

    @property
    def refit(self) -> bool:
        """Whether reconstruction runs: asked for, or by default whenever calibration data is given."""
        return self.calib is not None if self.reconstruct is None else self.reconstruct

    @property
    def target(self) -> AccuracyTarget | None:
        """The accuracy target to search for: ``min_agreement``, or ``max_drift`` with calibration data to measure
        on and no fixed ``ratio`` (otherwise ``max_drift`` only judges the validation of plans that are not
        mask-exact)."""
        searched_drift = self.max_drift is not None and self.calib is not None and self.ratio is None
        if self.min_agreement is None and not searched_drift:
            return None
        return AccuracyTarget(min_agreement=self.min_agreement, max_drift=self.max_drift)

    def settings(self) -> PlanSettings:
        """The analysis settings these options stand for (recorded in the plan, so validate can re-analyse)."""
        return PlanSettings(factor_policy=self.analysis_policy, input_shapes=dict(self.input_shapes),
                            initializer_inputs=self.initializer_inputs, heads_ratio=self.heads_ratio,
                            no_hidden=self.no_hidden, allowed_io_axes=tuple(sorted(self.allowed_io_axes)),
                            attention_units=self.attention_units, query_heads_ratio=self.query_heads_ratio)

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


@dataclass
class Pruned:
    """What ``prune`` returns: the pruned (and, with calibration data, reconstructed) model, the plan, and the
    report (MACs and params before/after, validation, fidelity, per-group table). Nothing is written until ``save``."""

    result: PruneResult
    plan: Plan
    report: dict
    source: str | None = None
    passes: list[Pruned] = field(default_factory=list)  # each pass of a two-pass prune (see prune_passes)
    structural: PruneResult | None = None  # the pruned model before reconstruction (None when no refit ran)

    @property
    def model(self) -> onnx.ModelProto:
        """The pruned ModelProto (self-contained; see ``PruneResult.model``)."""
        return self.result.model

    @property
    def macs(self) -> dict:
        """{'before': int, 'after': int} multiply-accumulates per sample (dynamic dims counted as 1)."""
        return self.report["macs"]

    @property
    def params(self) -> dict:
        """{'before': int, 'after': int} float parameters."""
        return self.report["params"]

    @property
    def validation(self) -> dict:
        """The structural check: the mask oracle for mask-exact plans, drift from the original otherwise."""
        return self.report["validation"]

    def save(self, path: str | os.PathLike, report: str | None = None, plan: str | None = None,
             html: str | None = None) -> None:
        """Write the model atomically (never over the input), and optionally the report JSON, the plan JSON and
        the HTML page."""
        for extra in (report, plan, html):
            if extra and not Path(extra).parent.is_dir():
                raise OnnxPruneError(f"directory {Path(extra).parent} of {extra} does not exist")
        mark = time.perf_counter()
        save_model(self.result.exported, path, source=self.source)
        self.report["output"] = str(path)
        self.report["stage_seconds"]["save"] = _lap(mark)
        if report:
            with open(report, "w") as f:
                json.dump(self.report, f, indent=2)
        if plan:  # one plan per pass: the first against the input, the next against the first pass's output
            for k, stage in enumerate(self.passes or [self]):
                stage.plan.save(plan if k == 0 else Path(plan).with_suffix(f".pass{k + 1}{Path(plan).suffix}"))
        if html:
            write_html(self.report, html)


def prune(source: str | os.PathLike | onnx.ModelProto, options: PruneOptions | None = None,
          progress: Callable[[str], None] = lambda message: None, **option_values) -> Pruned:
    """Prune a model (a path or a ModelProto) in memory: analyse, plan, apply, check, validate the structural
    step, reconstruct on calibration data when given, measure. ``options`` or keyword arguments named like
    PruneOptions' fields (``ratio=0.3, calib="calib.npz"``). ``calib`` may also be a dict of arrays, an iterable
    of feed dicts or an onnxruntime CalibrationDataReader. Nothing is written: see ``Pruned.save``."""
    options = dataclasses.replace(options or PruneOptions(), **option_values)
    if options.query_heads_ratio is not None and options.attention_units == "kv_groups":
        return prune_passes(source, options, progress)
    if options.refit and options.calib is None:
        raise OnnxPruneError("--reconstruct needs calibration data (--calib FILE.npz or a directory of them)")
    if options.min_agreement is not None and options.calib is None:
        raise OnnxPruneError("--min-agreement needs calibration data to measure agreement on (--calib)")
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    provider = available_provider(options.provider) if options.validate else None  # fails before any work
    settings = options.settings()
    dg = settings.analyse(source)
    seconds["analyse"] = _lap(start)
    name = "the in-memory model" if isinstance(source, onnx.ModelProto) else source
    progress(f"analysed {name}: {len(dg.channel_groups())} channel groups, {len(dg.prunable_groups())} "
             f"prunable; scoring with '{options.criterion}'")
    original = functools.cache(lambda: export_graph(dg.graph, dg.loaded))  # exported only when a stage needs it
    calibration = None
    if options.calib is not None:
        calibration = prepare_calibration(original(), options.calib, holdout=options.calib_holdout, seed=options.seed,
                                          mode=options.calib_mode)
        progress(f"calibration: {calibration.fit_samples} samples to fit, {calibration.holdout_samples} held out")
    selection = SelectionOptions(ratio=DEFAULT_RATIO if options.ratio is None else options.ratio,
                                 global_ranking=options.global_ranking,
                                 max_ratio=options.max_ratio, round_to=options.round_to, ignore=options.ignore,
                                 target_macs=options.target_macs, target_params=options.target_params,
                                 seed=options.seed, heads_ratio=options.heads_ratio, no_hidden=options.no_hidden,
                                 query_heads_ratio=options.query_heads_ratio)
    refit_options = ReconstructOptions(holdout=0.0, seed=options.seed) if options.refit else None
    target_result = None
    mark = time.perf_counter()
    if options.target is not None:
        progress(f"searching the most pruning that keeps {options.target.describe()} on held-out data")
        plan, target_result = plan_for_target(dg, options.target, options.criterion, selection, calibration,
                                              allocate=options.allocate, optimize=options.optimize,
                                              reconstruct=refit_options, progress=progress)
    else:
        plan = plan_pruning(dg, options.criterion, selection, calib=calibration, allocate=options.allocate,
                            optimize=options.optimize, reconstruct=refit_options, progress=progress)
    plan = plan.bind(dg, settings)
    seconds["plan"] = _lap(mark)
    warnings = ineffective_options(dg, options)
    if not plan.groups:
        warnings.append(f"nothing was pruned: {_why_nothing(dg, options)}; the model is written unchanged")
    progress(f"pruning {len(plan.groups)} groups")
    mark = time.perf_counter()
    result = apply_plan(dg, plan.groups)
    check_model(result.exported, original=original)
    seconds["apply"] = _lap(mark)
    validation = {"passed": None, "max_abs_diff": None, "oracle": False, "skipped": True}
    if options.validate and plan.groups:
        mark = time.perf_counter()
        progress(f"validating on {provider}: " + ("against the mask oracle" if plan.exact else
                                                  "output drift from the original (not mask-exact)"))
        every_sample = (dataclasses.replace(calibration, fit=calibration.fit + calibration.holdout, holdout=[])
                        if calibration is not None else None)  # a Calibration: whole feeds stay whole
        if _prunes_io(result, options):  # KV-cache heads: the cache shapes change, the decoder comparer feeds both
            validation = validate_decoder(plan, result.exported, provider=options.provider,
                                          max_drift=_max_drift(options), original=original(),
                                          seed=options.seed).to_dict()
        else:
            validation = validate_plan(plan, result.exported, every_sample, provider=options.provider,
                                       max_drift=_max_drift(options)).to_dict()
        validation["skipped"] = False
        seconds["validate"] = _lap(mark)
    reconstruction, fidelity, structural = None, None, None
    if options.refit and plan.groups:
        mark = time.perf_counter()
        progress(f"reconstructing on {calibration.fit_samples} calibration samples")
        structural = result
        reconstruction = reconstruct(dg, result, calibration, ReconstructOptions(seed=options.seed))
        result = reconstruction.result
        plan = dataclasses.replace(plan, refit=True)
        check_model(result.exported, original=original)
        seconds["reconstruct"] = _lap(mark)
        mark = time.perf_counter()
        measure = decoder_fidelity_of if _prunes_io(result, options) else measure_fidelity
        fidelity = measure(original(), structural, result, calibration.holdout or calibration.fit,
                           _max_drift(options), options.provider if options.validate else "cpu")
        seconds["measure"] = _lap(mark)
    pruned_graph = result.graph
    report = {
        "input": str(source) if not isinstance(source, onnx.ModelProto) else "<ModelProto>", "output": None,
        "criterion": plan.criterion, "ratio": plan.ratio,
        "macs": macs_report(dg.graph, pruned_graph, original, result.exported, options.input_shapes,
                            calibration.fit[0] if calibration is not None and calibration.fit else None),
        "params": {"before": count_params(dg.graph), "after": count_params(pruned_graph)},
        "groups": {"total": len(dg.channel_groups()), "pruned": len(plan.groups),
                   "blocked": len(dg.channel_groups()) - len(dg.prunable_groups())},
        "channels_removed": int(sum(len(units) for units in plan.groups.values())),
        "validation": validation, "notes": [*plan.notes, *getattr(dg.loaded, "grown", [])], "warnings": warnings,
    }
    if calibration is not None:
        report["calibration"] = {"fit_samples": calibration.fit_samples,
                                 "holdout_samples": calibration.holdout_samples}
    if reconstruction is not None:
        report["reconstruction"] = reconstruction.to_dict()
        report["fidelity"] = fidelity
    if target_result is not None:
        report["target"] = target_result.to_dict()
    report.update(report_tables(dg, plan.groups, pruned_graph))
    seconds["total"] = _lap(start)
    report["stage_seconds"] = seconds
    report["seconds"] = seconds["total"]
    return Pruned(result, plan, report, None if isinstance(source, onnx.ModelProto) else os.fspath(source),
                  structural=structural)


def prune_file(source: str | os.PathLike, output: str | os.PathLike, options: PruneOptions,
               report_path: str | None = None, plan_path: str | None = None,
               progress: Callable[[str], None] = lambda message: None) -> dict:
    """Prune ``source`` into ``output`` (written atomically; the input is never touched) and return the report
    dict (the ``--report`` JSON)."""
    check_output_path(source, output)
    for extra in (report_path, plan_path, options.html):
        if extra and not Path(extra).parent.is_dir():
            raise OnnxPruneError(f"directory {Path(extra).parent} of {extra} does not exist")
    pruned = prune(source, options, progress)
    pruned.save(output, report=report_path, plan=plan_path, html=options.html)
    return pruned.report




def prune_passes(source: str | os.PathLike | onnx.ModelProto, options: PruneOptions,
                 progress: Callable[[str], None] = lambda message: None) -> Pruned:
    """``--query-heads-ratio``: grouped-query attention cannot have KV groups and query heads as units of one
    analysis, so pruning is two passes. The first is ``options`` as given (KV groups at ``heads_ratio``, kept whole
    when it is None, and every other group); the second re-analyses its in-memory result with attention_units
    'query_heads' and removes ``query_heads_ratio`` of the query heads inside each KV group, nothing else, and is
    validated against its own mask oracle. With calibration data both passes reconstruct on the same split (the
    second refits towards the first's refit output), and the final fidelity is measured from the input model (see
    ``_two_pass_fidelity``). The report is the first pass's with the final sizes, each pass in ``passes`` (what it
    removed, its validation, its refit), and the worse validation."""
    heads = 0.0 if options.heads_ratio is None else options.heads_ratio
    calibration = None if options.calib is None else prepare_calibration(
        source, options.calib, holdout=options.calib_holdout, seed=options.seed, mode=options.calib_mode)
    first = prune(source, dataclasses.replace(options, calib=calibration, query_heads_ratio=None, heads_ratio=heads),
                  progress)
    progress(f"second pass: {options.query_heads_ratio:.0%} of the query heads inside each KV group")
    second = prune(first.model, dataclasses.replace(
        options, calib=_fed_to(calibration, first.result), ratio=0.0, heads_ratio=None, global_ranking=False,
        target_macs=None, target_params=None, min_agreement=None, allocate="uniform", attention_units="query_heads",
        html=None), progress)
    report = dict(first.report, notes=list(first.report["notes"]))
    report["macs"] = _final_macs(first, second)
    report["params"] = {"before": first.report["params"]["before"], "after": second.report["params"]["after"]}
    report["groups"] = {**first.report["groups"], "pruned": first.report["groups"]["pruned"]
                        + second.report["groups"]["pruned"]}
    report["channels_removed"] = first.report["channels_removed"] + second.report["channels_removed"]
    report["warnings"] = first.report["warnings"] + second.report["warnings"]
    report["validation"] = next((p.report["validation"] for p in (first, second)
                                 if p.report["validation"].get("passed") is False), second.report["validation"])
    report["passes"] = [_pass_summary(p, what) for p, what in (
        (first, "KV groups and every other group" if options.heads_ratio is not None else "every group but heads"),
        (second, "query heads inside each KV group"))]
    report["passes"][1]["macs_after"] = report["macs"]["after"]  # counted as pass 1 counted
    report["stage_seconds"] = {"pass 1": first.report["seconds"], "pass 2": second.report["seconds"]}
    structural = None
    if "reconstruction" in first.report or "reconstruction" in second.report:
        mark = time.perf_counter()
        progress("measuring the final model against the input on held-out calibration data")
        structural = _unrefit(first, second, report["notes"])
        report["reconstruction"] = _merged_reconstruction(first, second)
        report["fidelity"] = _two_pass_fidelity(first, structural, second, calibration, options)
        report["stage_seconds"]["measure"] = _lap(mark)
    report["seconds"] = round(sum(report["stage_seconds"].values()), 3)
    return Pruned(second.result, second.plan, report, first.source, [first, second], structural)


def _final_macs(first: Pruned, second: Pruned) -> dict:
    """MACs before (pass 1's) and after (the final model), counted the same way: pass 1 counts symbolic dims as 1
    when its input keeps weights in a data file, while pass 2 (an in-memory model) could count at concrete shapes."""
    before = first.report["macs"]
    if str(before.get("at", "")).startswith("symbolic") and second.report["macs"].get("at") != before["at"]:
        return {**before, "after": count_macs(second.result.graph)}
    return {**second.report["macs"], "before": before["before"]}


def _fed_to(calibration, result: PruneResult):
    """The calibration batches as ``result`` takes them (graph-input axes it pruned, e.g. KV-cache heads, dropped)."""
    if calibration is None:
        return None
    return dataclasses.replace(calibration, fit=pruned_feeds(calibration.fit, result.removed),
                               holdout=pruned_feeds(calibration.holdout, result.removed))


def _merged_reconstruction(first: Pruned, second: Pruned) -> dict:
    """Both passes' reconstruction reports as one (layers and notes of each, tagged with their pass)."""
    parts = [(k, p.report["reconstruction"]) for k, p in enumerate((first, second), 1) if "reconstruction" in p.report]
    merged = dict(parts[0][1])
    merged["layers"] = [{**layer, "pass": k} for k, part in parts for layer in part["layers"]]
    merged["notes"] = [f"pass {k}: {note}" for k, part in parts for note in part["notes"]]
    merged["seconds"] = sum(part["seconds"] for _, part in parts)
    return merged


def _two_pass_fidelity(first: Pruned, structural: PruneResult, second: Pruned, calibration,
                       options: PruneOptions) -> dict:
    """Fidelity rows of a two-pass prune, all measured from the input model on the held-out batches: 'pruned' is
    ``structural`` (both passes' removals without any refit, see ``_unrefit``), 'pruned + reconstructed' the final
    model."""
    dg = first.plan.depgraph
    measure = decoder_fidelity_of if _prunes_io(first.result, options) else measure_fidelity
    return measure(export_graph(dg.graph, dg.loaded), structural, second.result,
                   calibration.holdout or calibration.fit, _max_drift(options),
                   options.provider if options.validate else "cpu")


def _unrefit(first: Pruned, second: Pruned, notes: list) -> PruneResult:
    """Both passes' removals with no reconstruction. Pass 2's groups were found on pass 1's refit output (the refit
    may add bias nodes), so they are looked up again, by root axis and size, on pass 1's structural result; where one
    is not found the row falls back to pass 1 refit + pass 2 structural, and a note says so."""
    if first.structural is None:  # pass 1 refit nothing: pass 2's own structural result is the one
        return second.structural or second.result
    if not second.plan.groups:
        return first.structural
    dg = second.plan.settings.analyse(first.structural.model)
    found = {(g.root, g.size): g.id for g in dg.channel_groups()}
    wanted = {gid: (second.plan.depgraph.group(gid).root, second.plan.depgraph.group(gid).size)
              for gid in second.plan.groups}
    if not all(key in found for key in wanted.values()):
        notes.append("fidelity: the 'pruned' row is pass 1 refit + pass 2 structural (pass 2's groups were not found "
                     "again on pass 1's structural result)")
        return second.structural or second.result
    return apply_plan(dg, {found[wanted[gid]]: units for gid, units in second.plan.groups.items()})


def _pass_summary(pruned: Pruned, what: str) -> dict:
    """One pass of ``prune_passes`` in the report: what it pruned, how much, its validation, and how many layers
    its reconstruction refit (None: no reconstruction ran in that pass)."""
    dg = pruned.plan.depgraph
    heads = sum(len(u) for g, u in pruned.plan.groups.items() if is_heads(dg.group(g)))
    return {"what": what, "attention_units": pruned.plan.settings.attention_units,
            "groups_pruned": len(pruned.plan.groups), "units_removed": pruned.report["channels_removed"],
            "head_units_removed": heads, "macs_after": pruned.report["macs"]["after"],
            "params_after": pruned.report["params"]["after"], "validation": pruned.report["validation"],
            "refit_layers": len(pruned.report["reconstruction"]["layers"]) if "reconstruction" in pruned.report
            else None}


def _why_nothing(dg, options: PruneOptions) -> str:
    prunable = dg.prunable_groups()
    if not prunable:
        return "no group is prunable (`onnxprune groups --details MODEL` says why for each)"
    if options.ignore and len(ignored_groups(dg, options.ignore, prunable)) == len(prunable):
        return "--ignore leaves no prunable group"
    return "the ratio removes no whole unit from any prunable group (raise --ratio, or lower --round-to)"


def ineffective_options(dg, options: PruneOptions) -> list[str]:
    """Options that match or change nothing on this model, each said in one line."""
    found = []
    for pattern in options.ignore:
        if not ignored_groups(dg, [pattern]):
            found.append(f"--ignore '{pattern}' matches no node, initializer or tensor of any channel group")
    if options.query_heads_ratio is not None and not any(is_query_heads(g) for g in dg.prunable_groups()):
        found.append("--query-heads-ratio changes nothing: no prunable GroupQueryAttention query heads (see "
                     "`onnxprune groups MODEL`)")
    if options.heads_ratio is not None and not any(is_heads(g) for g in dg.prunable_groups()):
        found.append("--heads-ratio changes nothing: the analysis found no prunable attention-head group (see "
                     "`onnxprune groups MODEL --factor-policy leading`)")
    return found


def feeds_of(batches):
    """Calibration batches as the comparer takes them: a list of feed dicts (None: made-up inputs)."""
    return list(batches) if batches else None


def _prunes_io(result: PruneResult, options: PruneOptions) -> bool:
    """Whether to validate as a decoder: the plan changed the shape of an allowed graph input/output axis (the KV
    cache of a decoder), or cache axes are allowed on a model fed ``input_ids`` (a decoder whose cache stays: the
    generic comparer cannot make up its cache and sequence lengths)."""
    allowed = set(options.allowed_io_axes)
    if any(axis in allowed and len(indices) for axis, indices in result.removed.items()):
        return True
    return bool(allowed) and "input_ids" in {t.name for t in result.graph.inputs}


def _max_drift(options: PruneOptions) -> float:
    return DEFAULT_MAX_DRIFT if options.max_drift is None else options.max_drift


def _lap(mark: float) -> float:
    return round(time.perf_counter() - mark, 3)


def measure_fidelity(original, structural, refit, batches, max_drift: float, provider: str) -> dict:
    """The final model is not the mask oracle's any more (reconstruction changed weights), so it is measured as
    drift from the original on held-out calibration data, beside the pruned model before the refit: {'samples',
    'rows': [original, pruned, pruned + reconstructed], 'pruned' / 'reconstructed': Comparison dicts}."""
    feeds = feeds_of(batches)
    before = compare(original, structural.exported, feeds, oracle=False, max_drift=max_drift, provider=provider)
    after = compare(original, refit.exported, feeds, oracle=False, max_drift=max_drift, provider=provider)
    rows = [{"model": "original", "top1_agreement": 1.0 if before.top1_agreement is not None else None,
             "cosine": 1.0, "max_abs_diff": 0.0, "mean_abs_diff": 0.0, "drift": 0.0}]
    for name, found in (("pruned", before), ("pruned + reconstructed", after)):
        rows.append({"model": name, "top1_agreement": found.top1_agreement, "cosine": found.cosine,
                     "max_abs_diff": found.max_abs_diff, "mean_abs_diff": found.mean_abs_diff, "drift": found.drift})
    return {"samples": before.inputs, "rows": rows, "pruned": before.to_dict(), "reconstructed": after.to_dict()}


def decoder_fidelity_of(original, structural, refit, batches, max_drift: float, provider: str) -> dict:
    """``measure_fidelity`` for a decoder whose KV-cache heads were pruned (the models take caches of different
    shapes): the logits on the batches' input_ids, each model fed empty caches of its own (genai)."""
    return decoder_fidelity(original, structural.exported, refit.exported, list(batches), max_drift=max_drift,
                            provider=provider)


def format_report(report: dict) -> str:
    """The short human summary printed after pruning."""
    macs, params, groups = report["macs"], report["params"], report["groups"]
    validation = report["validation"]
    check = "skipped" if validation.get("skipped") else Comparison.from_dict(validation).summary()
    return "\n".join([
        f"pruned {report['input']} -> {report['output']} ({report['criterion']}, ratio {report['ratio']:.2f})",
        f"  MACs    {macs['before']:>14,} -> {macs['after']:>14,}  ({macs['after'] / max(macs['before'], 1):.1%})"
        + (f"  at {macs['at']}" if macs.get("at") else ""),
        f"  params  {params['before']:>14,} -> {params['after']:>14,}  "
        f"({params['after'] / max(params['before'], 1):.1%})",
        f"  groups  {groups['pruned']} pruned of {groups['total']} ({groups['blocked']} blocked), "
        f"{report['channels_removed']} channels removed",
        f"  checker and onnxruntime: passed; validation: {check}",
        *_pass_lines(report),
        *_fidelity_lines(report),
        *([f"  target  {report['target']['message']}"] if "target" in report else []),
        f"  time    {report['seconds']:.2f} s  (" + ", ".join(
            f"{k} {v:.2f}" for k, v in report.get("stage_seconds", {}).items() if k != "total") + ")",
    ])


def _pass_lines(report: dict) -> list[str]:
    """One line per pass of a two-pass prune (``prune_passes``): what it removed and its validation."""
    lines = []
    for k, step in enumerate(report.get("passes", []), 1):
        check = step["validation"]
        check = "skipped" if check.get("skipped") else Comparison.from_dict(check).summary()
        lines.append(f"  pass {k}  {step['what']}: {step['groups_pruned']} groups, {step['units_removed']} units "
                     f"({step['head_units_removed']} heads) removed; validation: {check}"
                     + ("" if step.get("refit_layers") is None else f"; {step['refit_layers']} layers refit"))
    return lines


def _fidelity_lines(report: dict) -> list[str]:
    """The original / pruned / pruned + reconstructed rows on held-out data, when reconstruction ran."""
    fidelity = report.get("fidelity")
    if not fidelity:
        return []
    held = report.get("calibration", {}).get("holdout_samples", 0)
    lines = [f"  fidelity on {held} held-out calibration samples:", f"    {'model':<24} {'top-1 agreement':>16} "
             f"{'cosine':>10} {'max |diff|':>11} {'mean |diff|':>12}"]
    for row in fidelity["rows"]:
        top1 = row.get("top1_agreement")
        lines.append(f"    {row['model']:<24} {'-' if top1 is None else f'{top1:.2%}':>16} {row['cosine']:>10.4f} "
                     f"{row['max_abs_diff']:>11.4g} {row['mean_abs_diff']:>12.4g}")
    return lines
