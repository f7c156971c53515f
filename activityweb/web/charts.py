"""Charts for the stats page, drawn on the server as SVG.

Geometry is computed here and the markup is in `templates/stats/_chart.html`:
no chart library and no script. The page's CSP allows no inline style, and
SVG presentation attributes (x, y, width, height) are not styles, so the
charts need nothing but app.css for colour. They are part of the htmx
partial, so they follow the filter like the rest of the page.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from ..filters import ActivityFilter
from ..store import SeriesPoint, Stats
from .present import filter_url

WIDTH, HEIGHT = 760, 220
# Room around the plot: the value axis, the last time label, the time labels, the top tick.
LEFT, RIGHT, BOTTOM, TOP = 44, 36, 26, 8
X_LABELS = 7
SERIES_COLOURS = 8  # app.css colours .series-0 ... .series-7


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    series: str
    colour: int  # which .series-N colour
    at: datetime


@dataclass
class ColumnChart:
    """Columns over time, stacked by series, on a value axis from 0 to `top`."""

    id: str
    title: str
    bucket: str
    bars: list[Bar] = field(default_factory=list)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    legend: list[tuple[str, int]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT

    @property
    def total(self) -> int:
        return sum(bar.value for bar in self.bars)


def nice_top(value: int) -> int:
    """A round top for a value axis: the smallest whole 1, 2, 2.5, 3, 4, 5, 6,
    8 or 10 times a power of ten at or above `value`."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(int(top) for step in (1, 2, 2.5, 3, 4, 5, 6, 8, 10)
                if (top := step * power) >= value and top == int(top))


def columns(chart_id: str, title: str, points: list[SeriesPoint], bucket: str,
            stacks: Callable[[SeriesPoint], dict[str, int]], series: list[str]) -> ColumnChart:
    """`stacks(point)`: the value of each series at a point, stacked in `series` order."""
    chart = ColumnChart(chart_id, title, bucket, legend=[(name, i % SERIES_COLOURS) for i, name in enumerate(series)])
    if not points:
        return chart
    top = nice_top(max(sum(stacks(p).values()) for p in points))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - BOTTOM - TOP
    slot = plot_width / len(points)
    gap = min(2.0, slot * 0.2)
    for index, point in enumerate(points):
        x = LEFT + index * slot + gap / 2
        base = HEIGHT - BOTTOM
        values = stacks(point)
        for name, colour in chart.legend:
            value = values.get(name, 0)
            if not value:
                continue
            height = value / top * plot_height
            base -= height
            chart.bars.append(Bar(round(x, 2), round(base, 2), round(slot - gap, 2), round(height, 2), value, name,
                                  colour, point.at))
    every = max(1, math.ceil(len(points) / X_LABELS))
    label = "%b %-d" if bucket == "day" else "%b %-d %H:00"
    chart.x_labels = [(round(LEFT + (i + 0.5) * slot, 2), p.at.strftime(label))
                      for i, p in enumerate(points) if i % every == 0]
    halves = (0, 0.5, 1) if top % 2 == 0 else (0, 1)
    chart.y_ticks = [(round(HEIGHT - BOTTOM - plot_height * f, 2), f"{int(top * f):,}") for f in halves]
    return chart


def for_stats(stats: Stats) -> dict[str, ColumnChart]:
    """The stats page's charts: events over time by source, and failures over time."""
    sources = [source for source, _ in stats.by_source]
    return {
        "events": columns("events-over-time", "Events over time, by source", stats.series, stats.bucket,
                          lambda p: p.by_source, sources),
        "failures": columns("failures-over-time", "Failures over time", stats.series, stats.bucket,
                            lambda p: {"failed": p.failed}, ["failed"]),
    }


@dataclass
class Ranked:
    """A row of a top list: its label, count, and the stats narrowed to it."""

    label: str
    count: int
    href: str | None


def top_lists(stats: Stats, flt: ActivityFilter) -> dict[str, list[Ranked]]:
    def narrowed(**change) -> str:
        return filter_url("web.stats", flt, **change)

    return {
        "types": [Ranked(t, n, narrowed(type=t)) for t, n in stats.by_type],
        "sources": [Ranked(s, n, narrowed(source=s)) for s, n in stats.by_source],
        "statuses": [Ranked(s or "(none)", n, narrowed(status=s) if s else None) for s, n in stats.by_status],
        "priorities": [Ranked(p, n, narrowed(priority=p)) for p, n in stats.by_priority],
        "actors": [Ranked(name or i, n, narrowed(actor=i)) for i, name, n in stats.top_actors],
        "entities": [Ranked(f"{name or i} ({t})" if t else (name or i), n, narrowed(entity_type=t, entity_id=i))
                     for t, i, name, n in stats.top_entities],
    }
