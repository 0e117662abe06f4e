"""Geometry for the small server-rendered SVG charts of usage (``templates/_charts.html`` draws
them): bars for counts and rates, lines with markers for latency. Pure functions of the
numbers; no Flask, no database. Coordinates are in the SVG's own viewBox units.
"""

import math
from dataclasses import dataclass, field

from .filters import plural

WIDTH, HEIGHT = 320, 130
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 22  # room for the axis labels


@dataclass(frozen=True)
class Mark:
    """One value drawn: a bar (``width``/``height``) or a line point (its centre ``x``, ``y``)."""

    x: float
    y: float
    width: float
    height: float
    value: float | None
    label: str  # the day and the value in words, for the marker's tooltip


@dataclass(frozen=True)
class Series:
    name: str
    kind: str  # "bars" or "line"; lines differ by ``style`` (dash and marker shape)
    marks: list[Mark]
    style: str = ""
    path: str = ""  # the line through the marks, broken where a day has no value


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    desc: str
    top: str  # the value at the top gridline, formatted
    series: list[Series] = field(default_factory=list)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    bottom: str = "0"  # the value at the axis
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: float = HEIGHT - BOTTOM


def nice_top(value: float) -> float:
    """The smallest 1, 2 or 5 × 10ⁿ at or above ``value`` (1 for nothing to show)."""
    if not value or value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10 * power


def _slot(i: int, count: int) -> tuple[float, float]:
    """Left edge and width of the ``i``-th of ``count`` equal slots across the plot."""
    width = (WIDTH - LEFT - RIGHT) / count
    return LEFT + i * width, width


def _y(value: float, top: float, bottom: float | None = None) -> float:
    """The height of ``value`` on a linear scale from 0 to ``top``, or, given ``bottom``, on a
    logarithmic one from ``bottom`` to ``top``."""
    plot = HEIGHT - TOP - BOTTOM
    if bottom is None:
        share = value / top
    else:
        value = min(max(value, bottom), top)
        share = math.log10(value / bottom) / math.log10(top / bottom)
    return HEIGHT - BOTTOM - plot * share


def decades(values: list[float | None]) -> tuple[float, float]:
    """The powers of ten around the values (for a logarithmic scale), at least one apart."""
    shown = [v for v in values if v]
    if not shown:
        return 1, 10
    bottom = 10 ** math.floor(math.log10(min(shown)))
    top = max(10 ** math.ceil(math.log10(max(shown))), bottom * 10)
    return bottom, top


def bars(name, values: list[float | None], labels: list[str], top: float, fmt=str) -> Series:
    """One bar per value (a missing value draws none); ``fmt`` writes a value for its tooltip."""
    marks = []
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        if value is None:
            continue
        left, slot = _slot(i, len(values))
        y = _y(value, top)
        text = f"{label}: {fmt(value)}"
        marks.append(Mark(left + slot * 0.15, y, slot * 0.7, HEIGHT - BOTTOM - y, value, text))
    return Series(name, "bars", marks)


def line(name, values, labels, scale: tuple[float, float], style: str, fmt=str) -> Series:
    """A line through the values' points on the logarithmic ``scale`` (bottom, top); a missing
    value breaks the line (no call that day)."""
    bottom, top = scale
    marks, path, pen_down = [], [], False
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        if value is None:
            pen_down = False
            continue
        left, slot = _slot(i, len(values))
        x, y = left + slot / 2, _y(value, top, bottom)
        marks.append(Mark(x, y, 0, 0, value, f"{label}: {name} {fmt(value)}"))
        path.append(f"{'L' if pen_down else 'M'}{x:.1f} {y:.1f}")
        pen_down = True
    return Series(name, "line", marks, style, " ".join(path))


def x_labels(labels: list[str], every: int = 7) -> list[tuple[float, str]]:
    """Positions and text of the day labels under the axis: the first, then every ``every``th,
    and the last."""
    picked = sorted({0, len(labels) - 1, *range(0, len(labels), every)})
    return [(_slot(i, len(labels))[0] + _slot(i, len(labels))[1] / 2, labels[i]) for i in picked]


def milliseconds(value: float | None) -> str:
    """``"85 ms"``, ``"1.5 s"``; ``"–"`` for no value."""
    if value is None:
        return "–"
    if value < 1000:
        return f"{value:.3g} ms" if value < 10 else f"{value:.0f} ms"
    return f"{value / 1000:.3g} s"


def percent(value: float | None) -> str:
    """``"12.5 %"``, ``"0 %"``; ``"–"`` for no value."""
    if value is None:
        return "–"
    return f"{value * 100:.3g} %"


def usage_charts(usage, subject: str) -> list[Chart]:
    """The three charts of a ``services.usage.Usage``: calls per day, error rate per day, and
    p50 / p95 latency per day. ``subject`` ("this agent") goes into each description."""
    days = usage.days
    labels = [d.day.strftime("%d %b") for d in days]
    span = f"{labels[0]} to {labels[-1]} (UTC)"
    calls = [d.calls for d in days]
    busiest = max(days, key=lambda d: d.calls)
    calls_top = nice_top(max(calls))
    rates = [d.error_rate for d in days]
    rate_top = nice_top(max((r or 0) for r in rates)) if any(rates) else 1
    rate_top = min(rate_top, 1)
    p50s, p95s = [d.p50 for d in days], [d.p95 for d in days]
    latency_scale = decades(p50s + p95s)
    total = usage.total
    axis = x_labels(labels)
    return [
        Chart(
            "chart-calls",
            "Calls per day",
            f"Calls of {subject} per day, {span}: {total.calls} in all"
            + (f", most on {busiest.day:%d %b} ({busiest.calls})." if total.calls else "."),
            f"{calls_top:g}",
            [bars("Calls", calls, labels, calls_top, lambda n: plural(n, "call"))],
            axis,
        ),
        Chart(
            "chart-errors",
            "Error rate per day",
            f"Share of calls of {subject} that did not end OK, per day, {span}: "
            f"{percent(total.error_rate)} over the whole period.",
            percent(rate_top),
            [bars("Error rate", rates, labels, rate_top, percent)],
            axis,
        ),
        Chart(
            "chart-latency",
            "Latency per day (p50 and p95)",
            f"Median (p50, circles, solid line) and 95th percentile (p95, squares, dashed line) "
            f"of call duration of {subject} per day, {span}: over the whole period p50 "
            f"{milliseconds(total.p50)}, p95 {milliseconds(total.p95)}. Logarithmic scale.",
            milliseconds(latency_scale[1]),
            [
                line("p50", p50s, labels, latency_scale, "p50", milliseconds),
                line("p95", p95s, labels, latency_scale, "p95", milliseconds),
            ],
            axis,
            bottom=milliseconds(latency_scale[0]),
        ),
    ]


def byte_size(value: int | None) -> str:
    """``"512 B"``, ``"1.5 kB"``, ``"2.3 MB"`` (powers of 1000)."""
    if value is None:
        return "–"
    for unit, size in (("MB", 1_000_000), ("kB", 1000)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value} B"
