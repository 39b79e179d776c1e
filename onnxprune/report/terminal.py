"""The human per-group table printed after pruning: one fixed-width line per channel group (id, kind, status,
width before -> after, share of the model's MACs in the layers it slices, root axis and its layer), then the
blocked groups with their reasons. Plain text, so it reads the same in a terminal, a log or a pipe."""

from __future__ import annotations


def _clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, keeping its end (names differ at the end: '.../layers.2/conv1/Conv')."""
    return text if len(text) <= width else "..." + text[-(width - 3):]


def _root(row: dict) -> str:
    return f"{row['root']['tensor']}[{row['root']['axis']}]"


def format_groups_table(report: dict, limit: int | None = 40, reasons: int = 10) -> str:
    """The per-group table of ``report`` (a dict with ``groups_table`` and ``blocked``, see
    docs/report_format.md). With more than ``limit`` groups, the ``limit`` with the largest MACs share are shown
    (in id order) and the rest counted; at most ``reasons`` blocked groups are listed with their reasons."""
    rows = report.get("groups_table", [])
    if not rows:
        return "groups: none"
    counts = {s: sum(r["status"] == s for r in rows) for s in ("pruned", "kept", "blocked")}
    lines = [f"groups: {counts['pruned']} pruned, {counts['kept']} kept, {counts['blocked']} blocked "
             f"(of {len(rows)} channel groups)",
             f"  {'id':>4}  {'kind':<8}  {'status':<7}  {'width':^16}  {'MACs share':>10}  {'root axis':<36}  layer"]
    shown = rows
    if limit is not None and len(rows) > limit:
        top = sorted(rows, key=lambda r: (-r["macs"]["share"], r["id"]))[:limit]
        shown = sorted(top, key=lambda r: r["id"])
    for row in shown:
        width = f"{row['width']['before']:>6} -> {row['width']['after']:<6}"
        lines.append(f"  {row['id']:>4}  {row['kind']:<8}  {row['status']:<7}  {width:>16}  "
                     f"{row['macs']['share']:>10.1%}  {_clip(_root(row), 36):<36}  {row['layer'] or '-'}")
    if len(shown) < len(rows):
        lines.append(f"  ... {len(rows) - len(shown)} more groups with smaller MACs shares (all are in the JSON "
                     f"report's groups_table)")
    blocked = report.get("blocked", [])
    for row in blocked[:reasons]:
        why = "; ".join(row["reasons"][:2]) or "no reason recorded"
        more = f" (+{len(row['reasons']) - 2} more)" if len(row["reasons"]) > 2 else ""
        lines.append(f"  blocked {row['id']:>4}  {_clip(_root(row), 36)}: {why}{more}")
    if len(blocked) > reasons:
        lines.append(f"  ... {len(blocked) - reasons} more blocked groups (see the JSON report's blocked list)")
    return "\n".join(lines)
