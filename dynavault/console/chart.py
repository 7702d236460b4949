"""The KMS timeline: GenerateDataKey / Decrypt / error counts per table over time, laid out for an SVG template
(``templates/chart.svg``). Pure arithmetic: the events come from the audit pages."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

SERIES = (("GenerateDataKey", "#2b6cb0"), ("Decrypt", "#2f855a"), ("errors", "#c53030"))
WIDTH, HEIGHT = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 14, 34
BUCKETS = 30


@dataclass
class Line:
    name: str
    color: str
    points: str
    total: int
    dots: list[tuple[float, float, int]] = field(default_factory=list)


@dataclass
class Chart:
    table: str
    width: int
    height: int
    lines: list[Line]
    y_ticks: list[tuple[float, int]]
    x_ticks: list[tuple[float, str]]
    plot: tuple[int, int, int, int]  # left, top, right, bottom


def _nice_max(value: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if value <= step:
            return step
    return value


def timeline(table: str, events: list[tuple[float, str, bool]], *, start: float, end: float) -> Chart:
    """``events``: (epoch seconds, event name, failed) for one table, any order."""
    span = max(end - start, 1.0)
    # event times are whole seconds: a bucket narrower than a second would only draw gaps
    buckets = max(2, min(BUCKETS, int(span)))
    counts = {name: [0] * buckets for name, _ in SERIES}
    for when, name, failed in events:
        i = min(buckets - 1, max(0, int((when - start) / span * buckets)))
        if failed:
            counts["errors"][i] += 1
        elif name in counts:
            counts[name][i] += 1
    top = _nice_max(max([1] + [c for series in counts.values() for c in series]))
    x0, y0, x1, y1 = LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM

    def x(i: float) -> float:
        return round(x0 + (x1 - x0) * (i + 0.5) / buckets, 1)

    def y(v: int) -> float:
        return round(y1 - (y1 - y0) * v / top, 1)

    lines = []
    for name, color in SERIES:
        series = counts[name]
        points = " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(series))
        dots = [(x(i), y(v), v) for i, v in enumerate(series) if v]
        lines.append(Line(name, color, points, sum(series), dots))
    y_ticks = [(y(v), v) for v in (0, top // 2, top) if v or top]
    x_ticks = []
    for frac in (0.0, 0.5, 1.0):
        stamp = dt.datetime.fromtimestamp(start + span * frac, dt.UTC).strftime("%H:%M:%S")
        x_ticks.append((round(x0 + (x1 - x0) * frac, 1), stamp))
    return Chart(table, WIDTH, HEIGHT, lines, y_ticks, x_ticks, (x0, y0, x1, y1))
