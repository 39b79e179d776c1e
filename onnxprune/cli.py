"""The ``onnxprune`` command line: a thin layer over the Python API."""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
import time

import click
import onnx

from onnxprune import progress
from onnxprune.analysis import AnalysisOptions, analyse_model
from onnxprune.analysis.stats import count_params, macs_report, op_support
from onnxprune.errors import OnnxPruneError
from onnxprune.genai import cache_io_axes, genai_config_path, rewrite_genai_dir
from onnxprune.pipeline import PruneOptions, format_report, prune_file
from onnxprune.report import format_groups_table
from onnxprune.report.command import report as report_command
from onnxprune.runtime import RUNTIMES, check_runtime
from onnxprune.validation.bench import benchmark
from onnxprune.validation.comparison import DEFAULT_MAX_DRIFT
from onnxprune.validation.validate import check_file
from onnxprune.validation.validate import validate as run_validation

GROUPS_SCHEMA_VERSION = 1  # `groups --json` (docs/formats.md)
_SHAPE_FORM = "NAME:D1xD2x... (e.g. x:1x3x224x224, or x:batchx3x224x224 to keep the batch symbolic)"


def parse_input_shapes(values: tuple[str, ...]) -> dict[str, list]:
    """Parse repeated ``NAME:D1xD2x...`` options: a number fixes a dim, a name keeps it symbolic under that name."""
    shapes = {}
    for value in values:
        name, sep, dims = value.rpartition(":")
        if not sep or not name or not dims:
            raise click.BadParameter(f"'{value}' is not {_SHAPE_FORM}", param_hint="--input-shape")
        parsed = []
        for dim in dims.split("x"):
            if not (dim.isdigit() or dim.isidentifier()):
                raise click.BadParameter(f"'{value}': dim '{dim}' is neither a number nor a name; the form is "
                                         f"{_SHAPE_FORM}", param_hint="--input-shape")
            parsed.append(int(dim) if dim.isdigit() else dim)
        shapes[name] = parsed
    return shapes


def clean_errors(func):
    """Turn OnnxPruneError into one line on stderr and exit code 2; any other exception too (as a probable bug,
    with a hint to report it), so bad input never shows a traceback. ``--debug`` (or ONNXPRUNE_DEBUG=1) lets the
    exception through with its traceback. Click's own usage errors and exits pass untouched. Output files the
    command created before failing (OUTPUT, --report, --plan) are removed, so a failure leaves nothing behind."""
    outputs = ("output_path", "report_path", "plan_path", "html_path")

    def one_line(exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or exc.__class__.__name__
        return text if len(text) <= 600 else text[:597] + "..."

    @functools.wraps(func)
    def wrapper(*args, debug: bool = False, **kwargs):
        debug = debug or os.environ.get("ONNXPRUNE_DEBUG", "") not in ("", "0")
        named = [kwargs[k] for k in outputs if kwargs.get(k)]
        if kwargs.get("output_path"):
            named.append(f"{kwargs['output_path']}.data")  # a big model's external data (see onnxprune.saving)
        new_files = [path for path in named if not os.path.exists(path)]
        try:
            return func(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            for path in new_files:
                if os.path.isfile(path):
                    os.unlink(path)
            if debug:
                raise
            if isinstance(exc, OnnxPruneError):
                click.echo(f"onnxprune: error: {one_line(exc)}", err=True)
            elif isinstance(exc, OSError) and exc.filename:  # a file the user named cannot be read or written
                click.echo(f"onnxprune: error: {exc.filename}: {exc.strerror or one_line(exc)}", err=True)
            else:
                click.echo(f"onnxprune: error: unexpected {exc.__class__.__name__}: {one_line(exc)} (probably a bug "
                           "in onnxprune: please report it with the model; --debug shows the traceback)", err=True)
            sys.exit(2)

    return click.option("--debug", is_flag=True, help="Show the full traceback of an error.")(wrapper)


factor_option = click.option("--factor-policy", type=click.Choice(["largest", "leading", "trailing"]),
                             default="largest", show_default=True,
                             help="Which factor of a split/merged channel axis carries pruning (leading = heads).")
initializer_inputs_option = click.option(
    "--prune-initializer-inputs", "prune_initializer_inputs", flag_value="prune", default="auto",
    help="Prune initializers the model also lists as graph inputs (by default only for IR version < 4, where the "
         "format requires that listing; otherwise they may be overridden at run time and are protected).")
max_drift_option = click.option(
    "--max-drift", type=click.FloatRange(0), default=DEFAULT_MAX_DRIFT, show_default=True,
    help="Plans that are not mask-exact (groups through normalisations) are judged by drift from the original: "
         "1 - top-1 agreement for [N, classes] outputs, 1 - cosine for others; fail above this.")
provider_option = click.option("--provider", type=click.Choice(["auto", "cuda", "cpu"]), default="auto",
                               show_default=True, help="onnxruntime execution provider (cuda must work here).")
input_shape_option = click.option(
    "--input-shape", "input_shapes", multiple=True, metavar="NAME:D1xD2x...",
    help="A graph input's shape (repeatable): a number fixes that dim, a name keeps it symbolic "
         "(x:batchx3x224x224). Used for analysis and for the made-up inputs of validation, benchmarks and MACs.")


@click.group()
@click.version_option(package_name="onnxprune")
@click.option("--quiet", is_flag=True, help="No progress bars (they are drawn only on a terminal anyway).")
def main(quiet: bool) -> None:
    """Structural pruning of ONNX models: find coupled channel groups, prune them, prove the result."""
    progress.enable(progress.wanted(quiet))


main.add_command(report_command)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--all", "show_all", is_flag=True, help="Also list batch/spatial/sequence and weightless groups.")
@click.option("--details/--no-details", default=False, help="Print every member of every group.")
@input_shape_option
@factor_option
@click.option("--attention-units", type=click.Choice(["kv-groups", "query-heads"]), default="kv-groups",
              show_default=True, help="GroupQueryAttention's unit: whole KV groups (what --heads-ratio prunes) or "
                                      "query heads inside them (what --query-heads-ratio prunes, in its own pass).")
@initializer_inputs_option
@clean_errors
def groups(model: str, as_json: bool, show_all: bool, details: bool, input_shapes: tuple[str, ...],
           factor_policy: str, attention_units: str, prune_initializer_inputs: str) -> None:
    """List the channel groups of MODEL: size, members, prunable or blocked with the reason."""
    dg = analyse_model(model, input_shapes=parse_input_shapes(input_shapes),
                       options=AnalysisOptions(factor_policy=factor_policy,
                                               attention_units=attention_units.replace("-", "_")),
                       initializer_inputs=prune_initializer_inputs)
    listed = dg.groups if show_all else dg.channel_groups()
    if as_json:
        click.echo(json.dumps({"schema_version": GROUPS_SCHEMA_VERSION, "model": model, "summary": dg.summary(),
                               "groups": [g.to_dict() for g in listed], "ties": [d.to_dict() for d in dg.ties]},
                              indent=2))
        return
    for group in listed:
        if details:
            click.echo(group.details())
            continue
        state = "prunable" if group.prunable else (f"blocked: {group.blocked_reasons[0]}"
                                                   if group.blocked_reasons else group.kind)
        exact = "" if group.exact else " (not mask-exact)"
        unit = {"heads": "heads", "head_dim positions": "hd"}.get(group.unit_name(), "ch")
        labels = f"  [{', '.join(sorted(group.labels))}]" if group.labels else ""
        blocks = "" if group.blocks is None else f"  ({int(group.blocks.max()) + 1} equal blocks)"
        click.echo(f"{group.id:>4}  {group.size:>6} {unit:<5} {len(group.members):>3} members  {group.root}  "
                   f"{state}{exact}{labels}{blocks}")
    untied = sum(d.untied for d in dg.ties)
    if dg.ties:
        click.echo(f"shared constants: {untied} untied (identical values only), {len(dg.ties) - untied} ties kept"
                   + ("" if details else " (--details says which and why)"))
    s = dg.summary()
    click.echo(f"{s['groups']} channel groups: {s['prunable']} prunable, {s['blocked']} blocked "
               f"(analysis {s['seconds']:.3f} s)")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@input_shape_option
@clean_errors
def inspect(model: str, as_json: bool, input_shapes: tuple[str, ...]) -> None:
    """Show MODEL's op types (supported or not), parameters, MACs and how many groups are prunable."""
    shapes = parse_input_shapes(input_shapes)
    dg = analyse_model(model, input_shapes=shapes)
    ops = op_support(dg.graph)
    macs = macs_report(dg.graph, dg.graph, model, model, shapes)
    report = {"model": model, "opset": dg.opset, "nodes": len(dg.graph.nodes), "params": count_params(dg.graph),
              "macs": macs["before"], **({"macs_at": macs["at"]} if "at" in macs else {}), "ops": ops,
              **dg.summary()}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{model}: opset {dg.opset}, {report['nodes']} nodes, {report['params']:,} params, "
               f"{report['macs']:,} MACs per sample" + (f" at {macs['at']}" if "at" in macs else ""))
    for op, info in ops.items():
        click.echo(f"  {op:<28} {info['count']:>5}  {'supported' if info['supported'] else 'UNSUPPORTED'}")
    unsupported = sum(1 for info in ops.values() if not info["supported"])
    click.echo(f"{len(ops)} op types ({unsupported} unsupported); {report['groups']} channel groups, "
               f"{report['prunable']} prunable, {report['blocked']} blocked")


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@click.argument("output_path", metavar="OUTPUT", type=click.Path(dir_okay=False))
@click.option("--ratio", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Fraction of channels to remove from every prunable group (or overall with --global); default "
                   "0.5, or searched under an accuracy target (--min-agreement, or --max-drift with --calib).")
@click.option("--criterion", type=click.Choice(["l2", "l1", "bn", "random", "fpgm", "lamp", "activation", "wanda"]),
              default="l2", show_default=True, help="Channel importance.")
@click.option("--global", "global_ranking", is_flag=True, help="Rank all groups together (normalised scores).")
@click.option("--round-to", type=click.IntRange(1), default=None, help="Keep channel counts at multiples of N.")
@click.option("--max-ratio", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Never remove more than this fraction of any one group.")
@click.option("--ignore", multiple=True, metavar="PATTERN",
              help="Protect groups touching nodes, initializers or tensors matching this glob (repeatable).")
@click.option("--calib", type=click.Path(exists=True), default=None,
              help="Calibration data: an .npz with one array per model input (first axis = samples; or keys "
                   "<i>__<input> for samples of different shapes), or a directory of them. Turns on reconstruction.")
@click.option("--calib-holdout", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="Fraction of the calibration samples never used to fit, only to measure.")
@click.option("--calib-mode", type=click.Choice(["auto", "samples", "feeds"]), default="auto", show_default=True,
              help="How --calib is split into samples: along the inputs' common sample axis ('samples'), one whole "
                   "feed (an .npz, or one <i>__ key set) per sample for inputs that share no sample axis, e.g. a "
                   "graph's x [nodes, F] and edge_index [2, edges] ('feeds'), or whichever the data shows ('auto').")
@click.option("--reconstruct/--no-reconstruct", default=None,
              help="Refit the layers that read pruned channels on the calibration data (default: on with --calib).")
@click.option("--allocate", type=click.Choice(["uniform", "sensitivity"]), default="uniform", show_default=True,
              help="Per-group ratios: the same for every group, or from each group's measured sensitivity (needs "
                   "--calib for real data).")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=None,
              help="Accuracy target: prune as much as possible while top-1 agreement with the original on the "
                   "held-out calibration data stays at least this (exit 1 if even the smallest step misses).")
@click.option("--optimize", type=click.Choice(["macs", "latency"]), default="macs", show_default=True,
              help="What sensitivity allocation saves first: MACs, or measured latency.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Write the report as one self-contained HTML page.")
@input_shape_option
@click.option("--target-macs", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Prune until this fraction of the MACs remains.")
@click.option("--target-params", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Prune until this fraction of the parameters remains.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None, help="Write the JSON report.")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False), default=None,
              help="Write the plan JSON (groups, removed indices, kept indices per initializer).")
@click.option("--no-validate", is_flag=True, help="Skip the output comparison (checker and onnxruntime still run).")
@provider_option
@click.option("--max-drift", type=click.FloatRange(0), default=None,
              help="With --calib: accuracy target, prune as much as possible while the drift from the original on "
                   "held-out data (1 - top-1 agreement, or 1 - cosine) stays at most this. Always: the limit for "
                   f"plans that are not mask-exact (default {DEFAULT_MAX_DRIFT}).")
@click.option("--heads-ratio", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Remove this fraction of whole attention heads (other groups use --ratio).")
@click.option("--query-heads-ratio", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="GroupQueryAttention: remove this fraction of the query heads inside each KV group (the same count "
              "from every group, at least one kept), in a second pass after the first (KV groups at --heads-ratio, "
              "kept whole without it, and the other groups at --ratio); each pass is validated on its own.")
@click.option("--no-hidden", is_flag=True, help="Keep a transformer's residual hidden width (groups through norms).")
@click.option("--allow-cache-io/--protect-cache-io", "allow_cache_io", default=None,
              help="Prune the head axis of KV-cache inputs/outputs (past_key_values.*, present.*) with the attention "
              "they feed, and write genai_config.json and the tokenizer files beside OUTPUT (default: on when a "
              "genai_config.json sits beside INPUT). Validation then compares the decoders' logits on random "
              "prompts run with empty caches (mask oracle, or drift when not mask-exact).")
@factor_option
@initializer_inputs_option
@clean_errors
def prune(input_path: str, output_path: str, ratio: float, criterion: str, global_ranking: bool,
          round_to: int | None, max_ratio: float, ignore: tuple[str, ...], calib: str | None, calib_holdout: float,
          calib_mode: str, reconstruct: bool | None, allocate: str, min_agreement: float | None, optimize: str,
          html_path: str | None, input_shapes: tuple[str, ...], target_macs: float | None,
          target_params: float | None, seed: int, report_path: str | None, plan_path: str | None,
          no_validate: bool, provider: str, max_drift: float | None, heads_ratio: float | None,
          query_heads_ratio: float | None, no_hidden: bool, factor_policy: str, prune_initializer_inputs: str,
          allow_cache_io: bool | None) -> None:
    """Prune INPUT into OUTPUT (written atomically; INPUT is never touched), validate and summarise."""
    if allow_cache_io is None:
        allow_cache_io = genai_config_path(input_path) is not None
    cache_axes = tuple(sorted(cache_io_axes(input_path))) if allow_cache_io else ()
    options = PruneOptions(ratio=ratio, criterion=criterion, global_ranking=global_ranking, round_to=round_to,
                           max_ratio=max_ratio, ignore=ignore, calib=calib,
                           input_shapes=parse_input_shapes(input_shapes), target_macs=target_macs,
                           target_params=target_params, seed=seed, validate=not no_validate,
                           provider=provider, allowed_io_axes=cache_axes,
                           factor_policy=factor_policy, heads_ratio=heads_ratio, no_hidden=no_hidden,
                           query_heads_ratio=query_heads_ratio,
                           initializer_inputs=prune_initializer_inputs, max_drift=max_drift,
                           min_agreement=min_agreement, reconstruct=reconstruct, calib_holdout=calib_holdout,
                           calib_mode=calib_mode, allocate=allocate, optimize=optimize, html=html_path)
    report = prune_file(input_path, output_path, options, report_path=report_path, plan_path=plan_path,
                        progress=_progress())
    if cache_axes and genai_config_path(input_path) is not None:
        written = rewrite_genai_dir(input_path, output_path, onnx.load(output_path, load_external_data=False))
        click.echo(f"onnxprune: wrote {written} and the tokenizer/processing files beside {output_path}", err=True)
    for warning in report.get("warnings", []):
        click.echo(f"onnxprune: warning: {warning}", err=True)
    click.echo(format_groups_table(report))
    click.echo(format_report(report))
    if report.get("target", {}).get("reached") is False:
        click.echo(f"onnxprune: accuracy target missed: {report['target']['message']}", err=True)
        sys.exit(1)
    if report["validation"].get("passed") is False:
        why = ("the pruned model does not match the mask oracle" if report["validation"]["oracle"] else
               "the pruned model drifts from the original more than --max-drift allows")
        click.echo(f"onnxprune: validation failed: {why}", err=True)
        sys.exit(1)


@main.command()
@click.argument("original", type=click.Path(exists=True, dir_okay=False))
@click.argument("pruned", type=click.Path(exists=True, dir_okay=False))
@click.option("--plan", "plan_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The plan JSON written by `prune --plan` (needed for --oracle).")
@click.option("--oracle", is_flag=True, help="Check against the original whose pruned channels are zeroed (needs "
              "--plan; plans that are not mask-exact are judged by drift instead, and the report says so).")
@click.option("--calib", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Inputs: .npz with arrays named like the model inputs (default: random).")
@click.option("--rtol", type=float, default=1e-4, show_default=True, help="Tolerance relative to max |output|.")
@click.option("--atol", type=float, default=None, help="Absolute tolerance (overrides --rtol).")
@max_drift_option
@click.option("--batch", type=click.IntRange(1), default=None,
              help="Random samples to compare on (default 2 for the oracle, 16 for drift); --calib overrides.")
@provider_option
@click.option("--runtime", type=click.Choice(RUNTIMES), default="onnxruntime", show_default=True,
              help="Where PRUNED runs: onnxruntime, or OpenVINO's CPU plugin (the reference stays on onnxruntime).")
@input_shape_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@clean_errors
def validate(original: str, pruned: str, plan_path: str | None, oracle: bool, calib: str | None, rtol: float,
             atol: float | None, max_drift: float, batch: int | None, provider: str, runtime: str,
             input_shapes: tuple[str, ...], as_json: bool) -> None:
    """Check PRUNED (checker, onnxruntime; with --runtime openvino it must also load and run there) and compare its
    outputs with ORIGINAL: by drift, or with --oracle and the plan against the mask oracle; exit 0 only when it
    passes."""
    check_runtime(runtime, provider)
    check_file(pruned)
    report = run_validation(original, pruned, plan=plan_path, oracle=oracle, calib=calib, rtol=rtol, atol=atol,
                            max_drift=max_drift, batch=batch, provider=provider, runtime=runtime,
                            shapes=parse_input_shapes(input_shapes))
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format())
    sys.exit(0 if report.passed else 1)


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--provider", type=click.Choice(["auto", "cuda", "tensorrt", "cpu"]), default="auto",
              show_default=True, help="onnxruntime execution provider (cuda and tensorrt must work here).")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="onnxruntime", show_default=True,
              help="onnxruntime, or OpenVINO's CPU plugin (f32, LATENCY hint; no --provider).")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True)
@click.option("--runs", type=click.IntRange(1), default=50, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=10, show_default=True)
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True, help="0: the runtime's default.")
@input_shape_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@clean_errors
def bench(models: tuple[str, ...], provider: str, runtime: str, batch: int, runs: int, warmup: int, threads: int,
          input_shapes: tuple[str, ...], as_json: bool) -> None:
    """Latency of one model, or of two measured alternately in one process with the speedup (onnxruntime or
    OpenVINO)."""
    if len(models) > 2:
        raise click.UsageError("bench takes one or two models")
    check_runtime(runtime, provider)
    report = benchmark(list(models), provider=provider, batch=batch, runs=runs, warmup=warmup, threads=threads,
                       runtime=runtime, shapes=parse_input_shapes(input_shapes))
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format_table())


@main.command()
@click.option("--model", "model_name", default="digits_resnet", show_default=True,
              help="A model trained in seconds on bundled data (digits_resnet, digits_mobilenet, seq_lstm, "
                   "tokens_transformer), resnet50 (real widths, random weights) or a name from models.ZOO.")
@click.option("--size", type=click.IntRange(32), default=160, show_default=True, help="Image size for resnet50.")
@click.option("--ratio", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True)
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Where to write the models (default: a temporary directory).")
@click.option("--runs", type=click.IntRange(1), default=30, show_default=True)
@provider_option
@clean_errors
def demo(model_name: str, size: int, ratio: float, out_dir: str | None, runs: int, provider: str) -> None:
    """Train (or export) a model from models/ (torch needed), prune it, validate, benchmark and print the report.

    A trained model is pruned twice from the same calibration data, without and with reconstruction, and the
    test accuracy of the original and of both pruned models is printed beside MACs and measured speedup."""
    try:
        from onnxprune import models
        from onnxprune.models import trained
    except ImportError as exc:
        raise click.ClickException(f"the demo needs torch and the models/ package ({exc})") from None
    known = ["resnet50", *trained.RECIPES, *models.ZOO]
    if model_name not in known:
        raise click.BadParameter(f"unknown model '{model_name}'; choose one of {known}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = out_dir or tmp
        os.makedirs(folder, exist_ok=True)
        show = _progress()
        if model_name in trained.RECIPES:
            _demo_trained(trained, model_name, folder, ratio, runs, provider, show)
        else:
            spec = models.resnet50_spec(size) if model_name == "resnet50" else models.ZOO[model_name]
            source = os.path.join(folder, f"{spec.name}.onnx")
            output = os.path.join(folder, f"{spec.name}.pruned.onnx")
            show(f"exporting {spec.name} ({spec.description}) with the TorchScript exporter, BatchNormalization "
                 "folded")
            models.export(spec, source, "torchscript", keep_bn=False)
            report = prune_file(source, output, PruneOptions(ratio=ratio, provider=provider), progress=show)
            show(f"benchmarking both models on onnxruntime ({runs} runs each, alternating)")
            timing = benchmark([source, output], provider=provider, batch=1, runs=runs, warmup=5)
            click.echo(format_report(report))
            click.echo(timing.format_table())
            if report["validation"].get("passed") is False:
                sys.exit(1)
        if out_dir is None:
            click.echo("(models written to a temporary directory; pass --out-dir to keep them)")


@main.command("apply-plan", add_help_option=False,
              context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def apply_plan(args: tuple[str, ...]) -> None:
    """Apply a prune plan to the PyTorch module the model came from, for fine-tuning (torch needed; --help)."""
    try:
        from onnxprune.torch import apply_plan_command  # torch is optional: imported only for this command
    except ImportError as exc:
        raise click.ClickException(f"apply-plan needs torch ({exc})") from None
    apply_plan_command.main(list(args), prog_name="onnxprune apply-plan")


def _demo_trained(trained, name: str, folder: str, ratio: float, runs: int, provider: str, show) -> None:
    """Train ``name``, prune it without and with reconstruction, and print accuracy, MACs and speedup."""
    import numpy as np

    show(f"training {name} on bundled data (seconds on CPU)")
    model = trained.train(name, folder)
    calib = os.path.join(folder, "calib.npz")
    np.savez(calib, **{model.input_name: model.calib})
    plain = os.path.join(folder, f"{name}.pruned_no_refit.onnx")
    output = os.path.join(folder, f"{name}.pruned.onnx")
    base = dict(ratio=ratio, provider=provider, calib=calib)
    prune_file(model.path, plain, PruneOptions(**base, reconstruct=False), progress=show)
    report = prune_file(model.path, output, PruneOptions(**base), progress=show)
    show(f"benchmarking the original and the pruned model ({runs} runs each, alternating, batch 64)")
    timing = benchmark([model.path, output], provider=provider, batch=64, runs=runs, warmup=5)
    click.echo(format_report(report))
    click.echo(f"test accuracy on {len(model.test_y)} samples never seen by training or pruning:")
    for label, path in (("original", model.path), ("pruned, no reconstruction", plain),
                        ("pruned + reconstructed", output)):
        click.echo(f"  {label:<28} {trained.accuracy(path, model.test_x, model.test_y, model.input_name):8.2%}")
    click.echo(timing.format_table())
    if report["validation"].get("passed") is False:
        sys.exit(1)


def _progress():
    """A progress callback printing timed steps to stderr."""
    start = time.perf_counter()

    def show(message: str) -> None:
        click.echo(f"[{time.perf_counter() - start:6.2f}s] {message}", err=True)

    return show


if __name__ == "__main__":
    main()
