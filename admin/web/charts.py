"""Bar charts drawn on the server: geometry here, SVG markup in ``_charts.html``.

Server-side SVG needs no script (the CSP allows none inline and the admin ships no charting
library), prints, and shows the same numbers the tables do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True)
class BarChart:
    title: str
    width: int
    height: int
    plot_top: int
    plot_bottom: int
    bars: list[Bar]
    max_value: int
    total: int
    first_label: str
    last_label: str


def bar_chart(
    title: str, points: Sequence[tuple[date, int]], *, width: int = 360, height: int = 130
) -> BarChart:
    top, bottom = 16, height - 18  # room for the max-value label above, dates below
    plot = bottom - top
    peak = max((value for _, value in points), default=0)
    # A zero peak still draws an axis with a scale of 1, so an empty chart reads "nothing".
    scale = max(peak, 1)
    slot = width / max(len(points), 1)
    gap = min(2.0, slot * 0.2)
    bars = []
    for i, (day, value) in enumerate(points):
        h = round(plot * value / scale, 1)
        # Days with some activity stay visible even next to a much higher peak.
        if value and h < 2:
            h = 2.0
        bars.append(
            Bar(
                x=round(i * slot + gap / 2, 2),
                y=round(bottom - h, 2),
                width=round(slot - gap, 2),
                height=h,
                label=day.isoformat(),
                value=value,
            )
        )
    return BarChart(
        title=title,
        width=width,
        height=height,
        plot_top=top,
        plot_bottom=bottom,
        bars=bars,
        max_value=peak,
        total=sum(value for _, value in points),
        first_label=points[0][0].strftime("%b %d") if points else "",
        last_label=points[-1][0].strftime("%b %d") if points else "",
    )
