"""The job page's chart, rendered on the server as inline SVG (no script, no library):
the last runs' duration and records written, one bar per run, oldest on the left.

Each bar links to its run and has a tooltip (``<title>``); its colour class follows
the run's status (styled by ``static/console.css``). The SVG has a text alternative
(``<title>``/``<desc>``) summarising the runs; the history table beside it holds every
number. Every text put into the SVG is escaped here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

from api.console.views import duration, status_class

__all__ = ["runs_chart"]

#: Drawing size in SVG units (the element scales to its container's width).
WIDTH = 1000
PANEL_HEIGHT = 70
LEFT = 72
RIGHT = 8
TOP = 22
GAP = 34
#: Bar slots at least (a few runs do not make giant bars).
MIN_SLOTS = 25


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _panel(
    runs: Sequence[Mapping[str, Any]],
    values: list[float],
    top: float,
    title: str,
    label: Callable[[float], str],
    run_url: Callable[[str], str],
) -> list[str]:
    slots = max(len(runs), MIN_SLOTS)
    plot = WIDTH - LEFT - RIGHT
    slot = plot / slots
    bar = max(slot * 0.7, 1.0)
    peak = max(values, default=0.0) or 1.0
    base = top + PANEL_HEIGHT
    parts = [
        f'<text class="chart-title" x="{LEFT}" y="{top - 8:.0f}">{escape(title)}</text>',
        f'<text class="chart-axis" x="{LEFT - 6}" y="{top + 4:.0f}" text-anchor="end">'
        f"{escape(label(peak))}</text>",
        f'<text class="chart-axis" x="{LEFT - 6}" y="{base:.0f}" text-anchor="end">0</text>',
        f'<line class="chart-grid" x1="{LEFT}" y1="{top:.1f}" x2="{WIDTH - RIGHT}" '
        f'y2="{top:.1f}"/>',
        f'<line class="chart-base" x1="{LEFT}" y1="{base:.1f}" x2="{WIDTH - RIGHT}" '
        f'y2="{base:.1f}"/>',
    ]
    for index, (run, value) in enumerate(zip(runs, values, strict=True)):
        height = max(PANEL_HEIGHT * value / peak, 1.5)
        x = LEFT + index * slot + (slot - bar) / 2
        status = str(run.get("status") or "unknown")
        tip = f"run {run.get('_id')}: {status}, {title.lower()} {label(value)}"
        parts.append(
            f'<a href="{escape(run_url(str(run.get("_id"))))}">'
            f'<rect class="bar {status_class(status)}" x="{x:.1f}" y="{base - height:.1f}" '
            f'width="{bar:.1f}" height="{height:.1f}"><title>{escape(tip)}</title></rect></a>'
        )
    return parts


def runs_chart(runs: Sequence[Mapping[str, Any]], run_url: Callable[[str], str]) -> Markup:
    """An SVG of ``runs`` (history documents, newest first as the history gives them);
    empty markup when there are none."""
    if not runs:
        return Markup("")
    ordered = list(reversed(runs))
    durations = [float(r.get("duration_s") or 0.0) for r in ordered]
    written = [float(r.get("records_written") or 0) for r in ordered]
    height = TOP + 2 * PANEL_HEIGHT + GAP + 12
    failed = sum(1 for r in ordered if status_class(r.get("status")) == "bad")
    summary = (
        f"The last {len(ordered)} runs, oldest first: {failed} failed; longest "
        f"{duration(max(durations))}, most records written {max(written):,.0f}."
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
        '<title id="chart-title">Duration and records written of the last runs</title>',
        f'<desc id="chart-desc">{escape(summary)}</desc>',
        *_panel(ordered, durations, TOP, "Duration", duration, run_url),
        *_panel(ordered, written, TOP + PANEL_HEIGHT + GAP, "Records written", _count, run_url),
        "</svg>",
    ]
    return Markup("".join(parts))
