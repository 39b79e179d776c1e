"""One self-contained HTML page from a report dict: the summary (MACs and params before -> after, criterion, ratio),
validation figures, latency before/after when measured, per-layer width bars along the network's depth, MACs and
params per stage, the per-group table and the blocked groups with their reasons.

Everything is inline: CSS in a <style> element, plots as <svg> elements (``onnxprune.report.plots``). No script, no
external URL: the file opens offline."""

from __future__ import annotations

import html
from pathlib import Path

from onnxprune.report.plots import layer_width_plot, si, stage_plot

_STYLE = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d2733; margin: 0;
       background: #f4f6f9; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 10px; }
.sub { color: #5b6675; margin: 0 0 18px; word-break: break-all; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid #dde2e8; border-radius: 8px; padding: 12px 14px; }
.card .label { color: #5b6675; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 20px; font-weight: 600; margin-top: 2px; }
.card .detail { color: #5b6675; font-size: 12px; }
.ok { color: #23824a; } .bad { color: #c0392b; } .muted { color: #5b6675; }
section { background: #fff; border: 1px solid #dde2e8; border-radius: 8px; padding: 14px 18px; margin-top: 14px; }
section h2 { margin-top: 0; }
svg { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #edf0f3; vertical-align: top; }
th { background: #f7f9fb; font-weight: 600; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; word-break: break-all; }
.scroll { max-height: 520px; overflow: auto; }
.tag { display: inline-block; padding: 0 6px; border-radius: 4px; font-size: 12px; background: #eef1f5; }
.tag.pruned { background: #dbe8f6; color: #1f4f84; } .tag.blocked { background: #f6dcdb; color: #8c2f2b; }
ul.reasons { margin: 0; padding-left: 18px; }
.pair { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 14px; }
.pair section { margin-top: 14px; }
table.kv th { width: 45%; background: none; position: static; color: #5b6675; font-weight: 500; }
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _ratio(pair: dict) -> float | None:
    return pair["after"] / pair["before"] if pair.get("before") else None


# -- page sections -----------------------------------------------------------------------------------------------
def _card(label: str, value: str, detail: str = "", cls: str = "") -> str:
    return (f'<div class="card"><div class="label">{_esc(label)}</div><div class="value {cls}">{value}</div>'
            f'<div class="detail">{detail}</div></div>')


def _summary(report: dict) -> str:
    cards = []
    for key, label in (("macs", "MACs"), ("params", "Parameters")):
        pair = report.get(key)
        if pair:
            ratio = _ratio(pair)
            cards.append(_card(label, f"{si(pair['before'])} &rarr; {si(pair['after'])}",
                               f"{ratio:.1%} remain" if ratio is not None else ""))
    groups = report.get("groups")
    if groups:
        cards.append(_card("Groups pruned", f"{groups['pruned']} / {groups['total']}",
                           f"{groups['blocked']} blocked, {report.get('channels_removed', 0)} units removed"))
    if "criterion" in report:
        cards.append(_card("Criterion", _esc(report["criterion"]), f"ratio {report.get('ratio', 0):.2f}"))
    validation = report.get("validation") or {}
    if validation:
        cards.append(_validation_card(validation))
    speed = _latency(report.get("latency"))
    if speed:
        cards.append(_card("Latency", f"{speed[0] / speed[1]:.2f}x faster" if speed[1] else "-",
                           f"median {speed[0]:.3g} &rarr; {speed[1]:.3g} ms"))
    if "seconds" in report:
        cards.append(_card("Time to prune", f"{report['seconds']:.2f} s"))
    return f'<div class="cards">{"".join(cards)}</div>'


def _validation_card(validation: dict) -> str:
    if validation.get("skipped"):
        return _card("Validation", "skipped", "", "muted")
    diff, drift = validation.get("max_abs_diff"), validation.get("drift")
    if validation.get("oracle"):
        detail = f"mask oracle, max abs diff {diff:.2e}" if isinstance(diff, (int, float)) else "mask oracle"
    else:  # judged by drift from the original against max_drift (see onnxprune.validation.comparison)
        allowed = validation.get("max_drift")
        detail = (f"drift {drift:.3g}" + (f" (allowed {allowed:g})" if isinstance(allowed, (int, float)) else "")
                  if isinstance(drift, (int, float)) else "output drift")
    passed = validation.get("passed")
    return _card("Validation", "passed" if passed else "FAILED", detail, "ok" if passed else "bad")


def _latency(latency: dict | None) -> tuple[float, float] | None:
    """(median ms before, after) from a BenchReport dict (models[0] = original, models[1] = pruned) or from
    {"before": {"median_ms"}, "after": {"median_ms"}}; None when not measured."""
    if not latency:
        return None
    if len(latency.get("models", [])) >= 2:
        return latency["models"][0]["median_ms"], latency["models"][1]["median_ms"]
    if "before" in latency and "after" in latency:
        return latency["before"]["median_ms"], latency["after"]["median_ms"]
    return None


def _key_values(title: str, values: dict) -> str:
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(_plain(v))}</td></tr>" for k, v in values.items()
                   if not isinstance(v, (dict, list)))
    return f"<section><h2>{_esc(title)}</h2><table class='kv'>{rows}</table></section>"


def _plain(value) -> str:
    if isinstance(value, float):
        return f"{value:.3e}" if value and abs(value) < 1e-3 else f"{value:.4g}"
    return "-" if value is None else str(value)


def _latency_section(latency: dict | None) -> str:
    speed = _latency(latency)
    if not speed:
        return ""
    facts = {k: latency[k] for k in ("provider", "batch", "runs", "warmup", "threads", "paired_speedup",
                                     "other_load") if k in latency}
    facts = {"median before (ms)": speed[0], "median after (ms)": speed[1],
             "speedup": speed[0] / speed[1] if speed[1] else None, **facts}
    return _key_values("Latency", facts)


def _table(headers: list[tuple[str, str]], rows: list[list[tuple[str, str]]], scroll: bool = True) -> str:
    head = "".join(f'<th class="{cls}">{_esc(h)}</th>' for h, cls in headers)
    body = "".join("<tr>" + "".join(f'<td class="{cls}">{cell}</td>' for cell, cls in row) + "</tr>"
                   for row in rows)
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>' if scroll else table


def _layers_section(layers: list[dict]) -> str:
    if not layers:
        return "<section><h2>Layer widths along the depth</h2><p class='muted'>No per-layer data in this report."\
               "</p></section>"
    rows = [[(str(r["depth"]), "num"), (_esc(r["name"]), "name"), (_esc(r["op"]), ""), (_esc(r.get("stage")), ""),
             (f"{_plain(r['width']['before'])} &rarr; {_plain(r['width']['after'])}", "num"),
             (f"{si(r['macs']['before'])} &rarr; {si(r['macs']['after'])}", "num"),
             (f"{si(r['params']['before'])} &rarr; {si(r['params']['after'])}", "num")] for r in layers]
    table = _table([("#", "num"), ("layer", ""), ("op", ""), ("stage", ""), ("width", "num"), ("MACs", "num"),
                    ("params", "num")], rows)
    return (f"<section><h2>Layer widths along the depth</h2>"
            f"<p class='muted'>Output width of each of the {len(layers)} weight-bearing layers before (grey) and "
            f"after pruning (blue); dotted lines separate stages.</p>{layer_width_plot(layers)}{table}</section>")


def _stages_section(stages: list[dict]) -> str:
    if not stages:
        return ""
    rows = [[(_esc(s["name"]), "name"), (str(s["layers"]), "num"),
             (f"{si(s['macs']['before'])} &rarr; {si(s['macs']['after'])}", "num"),
             (f"{si(s['params']['before'])} &rarr; {si(s['params']['after'])}", "num")] for s in stages]
    table = _table([("stage", ""), ("layers", "num"), ("MACs", "num"), ("params", "num")], rows, scroll=False)
    return (f"<section><h2>MACs and parameters per stage</h2><p class='muted'>Percentages: what remains of each "
            f"stage.</p>{stage_plot(stages)}{table}</section>")


def _groups_section(groups: list[dict]) -> str:
    if not groups:
        return ""
    rows = [[(str(g["id"]), "num"), (_esc(g["kind"]), ""), (f'<span class="tag {g["status"]}">{g["status"]}</span>',
                                                            ""),
             (f"{g['width']['before']} &rarr; {g['width']['after']}", "num"), (f"{g['macs']['share']:.1%}", "num"),
             (f"{_esc(g['root']['tensor'])} [axis {g['root']['axis']}]", "name"), (_esc(g.get("layer") or "-"),
                                                                                  "name")]
            for g in groups]
    table = _table([("id", "num"), ("kind", ""), ("status", ""), ("width", "num"), ("MACs share", "num"),
                    ("root axis", ""), ("layer", "")], rows)
    return (f"<section><h2>Groups</h2><p class='muted'>One row per channel group; MACs share: the model's MACs in "
            f"the layers whose weights the group slices (a layer counts for each group it belongs to).</p>"
            f"{table}</section>")


def _blocked_section(blocked: list[dict]) -> str:
    if not blocked:
        return "<section><h2>Blocked groups</h2><p class='muted'>None.</p></section>"
    rows = [[(str(b["id"]), "num"), (f"{_esc(b['root']['tensor'])} [axis {b['root']['axis']}]", "name"),
             (str(b["width"]), "num"),
             ("<ul class='reasons'>" + "".join(f"<li>{_esc(r)}</li>" for r in b["reasons"]) + "</ul>", "")]
            for b in blocked]
    table = _table([("id", "num"), ("root axis", ""), ("width", "num"), ("why it is kept whole", "")], rows)
    return f"<section><h2>Blocked groups ({len(blocked)})</h2>{table}</section>"


def render_html(report: dict) -> str:
    """The whole page for ``report`` (the ``--report`` JSON, with the tables of ``report_tables`` merged in) as
    one self-contained HTML string."""
    title = f"onnxprune report: {Path(str(report.get('input', 'model'))).name}"
    sub = (f"{_esc(report.get('input', '?'))} &rarr; {_esc(report.get('output', '?'))}" if "input" in report
           else "")
    validation = report.get("validation") or {}
    notes = report.get("notes") or []
    parts = [
        f"<h1>{_esc(title)}</h1><p class='sub'>{sub}</p>",
        _summary(report),
        '<div class="pair">' + (_key_values("Validation", validation) if validation and not validation.get("skipped")
                                else "") + _latency_section(report.get("latency")) + "</div>",
        _layers_section(report.get("layers", [])),
        _stages_section(report.get("stages", [])),
        _groups_section(report.get("groups_table", [])),
        _blocked_section(report.get("blocked", [])),
        ("<section><h2>Notes</h2><ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul></section>")
        if notes else "",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_esc(title)}</title>"
            f"<style>{_STYLE}</style></head><body><main>{''.join(parts)}</main></body></html>\n")


def write_html(report: dict, path: str | Path) -> None:
    """Write ``render_html(report)`` to ``path`` (UTF-8)."""
    Path(path).write_text(render_html(report), encoding="utf-8")
