"""The report's plots as inline SVG: layer widths along the depth, MACs and params per stage.

Drawn on a bare matplotlib ``Figure`` (no pyplot, no global state) and written by its SVG backend, vector only,
text kept as text; matplotlib is imported only when a plot is drawn (half a second that other commands would pay
at start-up). The XML prolog, DOCTYPE, metadata and namespace URIs are stripped (HTML does not need them) and every
id is prefixed per figure, so several figures can share one page."""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BEFORE, AFTER = "#c7cdd6", "#2f6fb3"


def si(value: float | int | None) -> str:
    """A count in a few characters: 3.24 M, 812 k, 95 ('-' for None)."""
    if value is None:
        return "-"
    for factor, suffix in ((1e12, " T"), (1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:g}" if isinstance(value, float) else str(value)


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
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: si(value)))
        ax.set_xlim(0, largest * 1.12)
        ax.grid(axis="x", color="#e6e9ee", zorder=0)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_yticks(y, [s["name"] if len(s["name"]) <= 30 else "..." + s["name"][-27:] for s in stages])
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, frameon=False)
    figure.subplots_adjust(wspace=0.08)
    return _svg(figure, "stages")
