"""One self-contained HTML page from a report dict: the summary (MACs and params before -> after, criterion, ratio),
validation figures, latency before/after when measured, per-layer width bars along the network's depth, MACs and
params per stage, the per-group table and the blocked groups with their reasons.

Everything is inline: CSS in a <style> element, plots as <svg> elements drawn by matplotlib's SVG backend (a bare
``Figure``, no pyplot, no Agg; imported only when a page is drawn), text kept as text. No script, no external URL:
the file opens offline, and the SVG's namespace URIs, DOCTYPE and metadata are stripped (HTML does not need them)."""

from __future__ import annotations

import html
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BEFORE, AFTER, BLOCKED = "#c7cdd6", "#2f6fb3", "#c0504d"
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


def _si(value: float | int | None) -> str:
    """A count in a few characters: 3.24 M, 812 k, 95."""
    if value is None:
        return "-"
    for factor, suffix in ((1e12, " T"), (1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _ratio(pair: dict) -> float | None:
    return pair["after"] / pair["before"] if pair.get("before") else None


def _figure(width: float, height: float) -> Figure:
    """A bare matplotlib Figure (no pyplot, no Agg). matplotlib is imported here, when a page is drawn: importing
    it takes half a second that every other command would pay at start-up."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _svg(figure: Figure, prefix: str) -> str:
    """The figure as an inline <svg> element: text kept as text, no XML prolog, DOCTYPE, metadata or namespace
    URIs, and every id prefixed with ``prefix`` so that two figures on one page never share one (a clip path
    reference resolves to the first element with its id in the whole document)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "onnxprune", "font.size": 9}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    return re.sub(r'(url\(#|href="#)([^)"]+)', rf"\1{prefix}-\2", text)


# -- plots -------------------------------------------------------------------------------------------------------
def _label(row: dict) -> str:
    name = row.get("module") or row["name"]
    return name if len(name) <= 34 else "..." + name[-31:]


def layer_width_plot(layers: list[dict]) -> str:
    """Inline SVG: every layer's output width before (grey) and after (blue) along the depth, stage boundaries
    marked; '' when there are no layers."""
    rows = [r for r in layers if r["width"]["before"] is not None]
    if not rows:
        return ""
    n = len(rows)
    figure = _figure(11, 3.9 if n <= 80 else 3.2)
    ax = figure.add_subplot()
    x = list(range(n))
    before = [r["width"]["before"] for r in rows]
    after = [r["width"]["after"] if r["width"]["after"] is not None else 0 for r in rows]
    ax.bar(x, before, width=0.8, color=BEFORE, label="before", zorder=2)
    ax.bar(x, after, width=0.5, color=AFTER, label="after", zorder=3)
    stages = [r.get("stage") for r in rows]
    top = max(before)
    for k in range(n):
        if k == 0 or stages[k] != stages[k - 1]:
            if k:
                ax.axvline(k - 0.5, color="#8a94a3", linewidth=0.6, linestyle=":", zorder=1)
            if stages[k] is not None and (n <= 80 or k == 0 or k - _last_start(stages, k) >= n / 12):
                ax.text(k - 0.4, top * 1.02, str(stages[k]), fontsize=7, color="#5b6675", va="bottom",
                        rotation=30 if n > 12 else 0)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(0, top * 1.25)
    ax.set_ylabel("output width (channels / features)")
    ax.set_xlabel("layer, in topological order")
    if n <= 60:
        ax.set_xticks(x, [_label(r) for r in rows], rotation=90, fontsize=7)
    ax.grid(axis="y", color="#e6e9ee", zorder=0)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper right", frameon=False, ncols=2, bbox_to_anchor=(1, 1.18))
    return _svg(figure, "widths")


def _last_start(stages: list, k: int) -> int:
    """Index of the start of the previous stage run before ``k``."""
    j = k - 1
    while j > 0 and stages[j - 1] == stages[j]:
        j -= 1
    return j


def stage_plot(stages: list[dict]) -> str:
    """Inline SVG: MACs and params per stage, before and after, side by side; '' when there are no stages."""
    if not stages:
        return ""
    n = len(stages)
    from matplotlib import ticker

    figure = _figure(11, max(2.2, 0.32 * n + 1.1))
    axes = figure.subplots(1, 2, sharey=True)
    y = list(range(n))
    for ax, key, title in ((axes[0], "macs", "MACs per stage"), (axes[1], "params", "parameters per stage")):
        before = [s[key]["before"] for s in stages]
        after = [s[key]["after"] for s in stages]
        ax.barh([v - 0.2 for v in y], before, height=0.4, color=BEFORE, label="before", zorder=2)
        ax.barh([v + 0.2 for v in y], after, height=0.4, color=AFTER, label="after", zorder=2)
        largest = max(before + after) or 1
        for v, b, a in zip(y, before, after):
            if b:
                ax.text(a + largest * 0.01, v + 0.2, f"{a / b:.0%}", va="center", fontsize=7, color="#1d2733")
        ax.set_title(title, fontsize=10, loc="left")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: _si(value)))
        ax.set_xlim(0, largest * 1.12)
        ax.grid(axis="x", color="#e6e9ee", zorder=0)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_yticks(y, [s["name"] if len(s["name"]) <= 30 else "..." + s["name"][-27:] for s in stages])
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right", frameon=False)
    figure.subplots_adjust(wspace=0.08)
    return _svg(figure, "stages")


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
            cards.append(_card(label, f"{_si(pair['before'])} &rarr; {_si(pair['after'])}",
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
    kind = "mask oracle" if validation.get("oracle") else "output drift"
    diff = validation.get("max_abs_diff")
    detail = f"{kind}, max abs diff {diff:.2e}" if isinstance(diff, (int, float)) else kind
    passed = validation.get("passed")
    if not validation.get("oracle") and passed is not False:  # no exact reference: the drift is a figure, not a verdict
        return _card("Validation", "output drift", detail.replace("output drift, ", ""), "muted")
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
             (f"{_si(r['macs']['before'])} &rarr; {_si(r['macs']['after'])}", "num"),
             (f"{_si(r['params']['before'])} &rarr; {_si(r['params']['after'])}", "num")] for r in layers]
    table = _table([("#", "num"), ("layer", ""), ("op", ""), ("stage", ""), ("width", "num"), ("MACs", "num"),
                    ("params", "num")], rows)
    return (f"<section><h2>Layer widths along the depth</h2>"
            f"<p class='muted'>Output width of each of the {len(layers)} weight-bearing layers before (grey) and "
            f"after pruning (blue); dotted lines separate stages.</p>{layer_width_plot(layers)}{table}</section>")


def _stages_section(stages: list[dict]) -> str:
    if not stages:
        return ""
    rows = [[(_esc(s["name"]), "name"), (str(s["layers"]), "num"),
             (f"{_si(s['macs']['before'])} &rarr; {_si(s['macs']['after'])}", "num"),
             (f"{_si(s['params']['before'])} &rarr; {_si(s['params']['after'])}", "num")] for s in stages]
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
