"""Plots as plain SVG: the roofline scatter and a case's history over commits.

Drawn here rather than with matplotlib: the page draws up to 16 charts, and
matplotlib's SVG backend took most of the page's build time where these take
milliseconds (benchmarks/README.md, "The summary page's build time").  Every point
carries a ``<title>`` (the browser's tooltip: which case, which value), and the
output depends on nothing but the data, so the golden page does not move with a
plotting library's version.  Geometry is computed here; the ``chart.svg.j2``
template writes the elements, escaping every label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import history
from ..units import fmt
from .load import unit_of

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
MARKERS = ("circle", "square", "diamond", "triangle")


@dataclass
class Chart:
    """What ``chart.svg.j2`` draws, in pixels from the top left."""

    width: float
    height: float
    title: str = ""
    rects: list[dict] = field(default_factory=list)  # x, y, w, h, fill, [stroke]
    lines: list[dict] = field(default_factory=list)  # x1, y1, x2, y2, stroke, [dash], [width]
    polylines: list[dict] = field(default_factory=list)  # points "x,y ...", stroke
    marks: list[dict] = field(default_factory=list)  # x, y, shape, fill, title
    texts: list[dict] = field(default_factory=list)  # x, y, text, [anchor], [size], [rotate]


@dataclass
class Axis:
    """A linear or log axis from data to pixels."""

    lo: float
    hi: float
    p0: float
    p1: float
    log: bool = False

    def __post_init__(self) -> None:
        if self.log:
            self.lo, self.hi = math.log10(self.lo), math.log10(self.hi)
        if self.hi <= self.lo:
            self.lo, self.hi = self.lo - 0.5, self.hi + 0.5

    def __call__(self, v: float) -> float:
        v = math.log10(v) if self.log else v
        return round(self.p0 + (v - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0), 2)

    def ticks(self) -> list[float]:
        if self.log:
            # Decades; over a narrow range, 2x and 5x between them so the axis is still readable.
            steps = (1, 2, 5) if self.hi - self.lo < 2.5 else (1,)
            return [m * 10.0**k for k in range(math.floor(self.lo), math.ceil(self.hi) + 1) for m in steps
                    if self.lo - 1e-9 <= math.log10(m * 10.0**k) <= self.hi + 1e-9]
        step = 10 ** math.floor(math.log10((self.hi - self.lo) / 2 or 1))
        first = math.ceil(self.lo / step) * step
        return [first + i * step for i in range(int((self.hi - first) / step) + 1)][:8]


def _frame(chart: Chart, x: Axis, y: Axis, xlabel: str, ylabel: str, ytick) -> None:
    """Plot area, grid, tick labels and axis labels."""
    chart.rects.append({"x": x.p0, "y": y.p1, "w": x.p1 - x.p0, "h": y.p0 - y.p1, "fill": "#fff",
                        "stroke": "#999"})
    for t in y.ticks():
        py = y(t)
        chart.lines.append({"x1": x.p0, "y1": py, "x2": x.p1, "y2": py, "stroke": "#e4e4e4"})
        chart.texts.append({"x": x.p0 - 4, "y": py + 3, "text": ytick(t), "anchor": "end", "size": 9})
    for t in x.ticks():
        px = x(t)
        chart.lines.append({"x1": px, "y1": y.p0, "x2": px, "y2": y.p1, "stroke": "#e4e4e4"})
        chart.texts.append({"x": px, "y": y.p0 + 12, "text": f"{t:g}", "anchor": "middle", "size": 9})
    chart.texts.append({"x": (x.p0 + x.p1) / 2, "y": y.p0 + 26, "text": xlabel, "anchor": "middle", "size": 10})
    chart.texts.append({"x": 12, "y": (y.p0 + y.p1) / 2, "text": ylabel, "anchor": "middle", "size": 10,
                        "rotate": -90})


def roofline(points: pd.DataFrame, peak: float, bandwidth: float | None, title: str) -> Chart:
    """Log-log GFLOP/s against arithmetic intensity under the roof min(peak, bandwidth x intensity),
    a colour and marker per implementation, each point labelled with its percentage of the roof."""
    chart = Chart(760, 400, title)
    lo_ai, hi_ai = float(points["ai"].min()) / 2, float(points["ai"].max()) * 2
    if bandwidth:
        lo_ai = min(lo_ai, peak / bandwidth / 4)
        hi_ai = max(hi_ai, peak / bandwidth * 4)
    x = Axis(lo_ai, hi_ai, 62, 560, log=True)
    low = float(points["gflops"].min())
    if bandwidth:
        low = min(low, bandwidth * lo_ai)
    y = Axis(low / 1.5, peak * 2, 360, 30, log=True)
    _frame(chart, x, y, "arithmetic intensity (FLOP/byte)", "GFLOP/s", lambda t: f"{t:g}")
    chart.texts.append({"x": (x.p0 + x.p1) / 2, "y": 18, "text": title, "anchor": "middle", "size": 11})
    roof = "#555"
    if bandwidth:
        ridge = peak / bandwidth
        x0 = 10 ** x.lo
        chart.lines.append({"x1": x(x0), "y1": y(bandwidth * x0), "x2": x(ridge), "y2": y(peak), "stroke": roof})
        chart.texts.append({"x": x(x0) + 6, "y": y(bandwidth * x0) - 6, "text": f"{bandwidth:.3g} GB/s",
                            "size": 9})
    else:
        ridge = 10 ** x.lo
    chart.lines.append({"x1": x(ridge), "y1": y(peak), "x2": x.p1, "y2": y(peak), "stroke": roof})
    chart.texts.append({"x": x.p1 - 4, "y": y(peak) - 5, "text": f"peak {fmt(peak, 'gflops')}", "anchor": "end",
                        "size": 9})
    for i, (impl, grp) in enumerate(points.groupby("impl", sort=True)):
        colour, marker = PALETTE[i % len(PALETTE)], MARKERS[(i // len(PALETTE)) % len(MARKERS)]
        for r in grp.itertuples(index=False):
            px, py = x(r.ai), y(r.gflops)
            chart.marks.append({"x": px, "y": py, "shape": marker, "fill": colour,
                                "title": f"{impl} {r.shape}: {fmt(r.gflops, 'gflops')}, {r.of_roof:.0%} of the "
                                         f"roof ({fmt(r.roof, 'gflops')}) at {r.ai:.3g} FLOP/byte"})
            chart.texts.append({"x": px + 5, "y": py + 3, "text": "above roof" if r.above_roof else f"{r.of_roof:.0%}",
                                "size": 8, "fill": colour})
        ly = 40 + 16 * i
        chart.marks.append({"x": 576, "y": ly - 4, "shape": marker, "fill": colour, "title": str(impl)})
        chart.texts.append({"x": 586, "y": ly, "text": str(impl), "size": 10})
    return chart


def history_chart(series: dict[str, pd.DataFrame], change: pd.Series) -> Chart:
    """The case over commits, a panel per metric: the changed metric in red, the step dashed,
    wall time with its run-to-run band."""
    commits = series["_commits"]
    panels = [m for m in history.metrics() if m.kind in series]
    width = 230
    chart = Chart(width * max(len(panels), 1) + 10, 170)
    step = commits.loc[commits["commit"] == change["after_commit"], "pos"]
    n = max(len(commits), 1)
    for i, metric in enumerate(panels):
        d = series[metric.kind]
        x = Axis(-0.5, n - 0.5, 70 + width * i, width * (i + 1) - 10)
        values = d["value"].to_numpy(dtype=float)
        lo, hi = (float(np.min(values)), float(np.max(values))) if len(values) else (0.0, 1.0)
        band = metric.kind == "time" and len(values)
        mid = float(np.median(values)) if band else 0.0
        if band:
            lo, hi = min(lo, mid * (1 - history.WALL_TIME_NOISE)), max(hi, mid * (1 + history.WALL_TIME_NOISE))
        pad = (hi - lo) * 0.1 or abs(hi) * 0.05 or 1.0
        y = Axis(lo - pad, hi + pad, 135, 22)
        unit = unit_of().get(metric.kind, "")
        _frame_panel(chart, x, y, metric.label, unit)
        if band:
            top, bottom = y(mid * (1 + history.WALL_TIME_NOISE)), y(mid * (1 - history.WALL_TIME_NOISE))
            chart.rects.append({"x": x.p0, "y": top, "w": x.p1 - x.p0, "h": bottom - top, "fill": "#ddd"})
        if len(step):
            px = x(float(step.iloc[0]) - 0.5)
            chart.lines.append({"x1": px, "y1": y.p0, "x2": px, "y2": y.p1, "stroke": "#888", "dash": "4,3"})
        colour = "#b00" if metric.kind == change["kind"] else "#36c"
        pts = [(x(p), y(v)) for p, v in zip(d["pos"], values, strict=True)]
        chart.polylines.append({"points": " ".join(f"{a},{b}" for a, b in pts), "stroke": colour})
        for (px, py), commit, v in zip(pts, d["commit"], values, strict=True):
            chart.marks.append({"x": px, "y": py, "shape": "dot", "fill": colour,
                                "title": f"{commit[:8]}: {fmt(v, unit)}"})
    return chart


def _frame_panel(chart: Chart, x: Axis, y: Axis, label: str, unit: str) -> None:
    chart.rects.append({"x": x.p0, "y": y.p1, "w": x.p1 - x.p0, "h": y.p0 - y.p1, "fill": "#fff", "stroke": "#999"})
    for v in (y.lo, (y.lo + y.hi) / 2, y.hi):
        chart.texts.append({"x": x.p0 - 4, "y": y(v) + 3, "text": fmt(v, unit), "anchor": "end", "size": 8})
    chart.texts.append({"x": (x.p0 + x.p1) / 2, "y": 14, "text": label, "anchor": "middle", "size": 10})
    chart.texts.append({"x": (x.p0 + x.p1) / 2, "y": y.p0 + 14, "text": "commits, oldest first",
                        "anchor": "middle", "size": 8})
