"""The one formatter of measured values: the summary page, ``linbench gate`` and the CLI print through it.

Units are asv's (``seconds``, ``bytes``, a track's own unit such as ``instructions`` or
``ratio``) plus the report's derived ones (``gflops``, ``speedup``).  Every value is
shown with about three significant figures: enough to see a 1% change, few enough
to read a table of them.  A missing value (None, NaN, infinity) is an en dash.
"""

from __future__ import annotations

import datetime as _dt
import math

MISSING = "–"


def number(value: float) -> str:
    """About three significant figures, no exponent for everyday magnitudes."""
    if value is None or not math.isfinite(value):
        return MISSING
    a = abs(value)
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 0.01 or a == 0:
        return f"{value:.2f}"
    return f"{value:.2g}"


def _seconds(value: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(value) >= scale:
            return f"{number(value / scale)} {unit}"
    return f"{number(value / 1e-9)} ns"


def _size(value: float) -> str:
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(value) >= scale:
            return f"{number(value / scale)} {unit}"
    return f"{value:.0f} B"


def _instructions(value: float) -> str:
    return f"{value / 1e3:,.1f}k" if abs(value) < 1e6 else f"{value / 1e6:,.2f}M"


_FORMATS = {
    "seconds": _seconds,
    "bytes": lambda v: f"{v / 2**20:.1f} MiB",
    "size": _size,
    "instructions": _instructions,
    "ratio": lambda v: f"{v:.3g}×",
    "speedup": lambda v: f"{v:.2f}×",
    "gflops": lambda v: f"{number(v)} GFLOP/s",
    "threads": lambda v: f"{v:g}",
    "count": lambda v: f"{v:,.0f}",
    "calls": lambda v: f"{v:,.0f} calls",
}
UNITS = tuple(_FORMATS)


def fmt(value: float | None, unit: str) -> str:
    """``value`` in ``unit`` for a reader: ``fmt(3.2e-6, "seconds") == "3.20 µs"``."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return MISSING
    return _FORMATS.get(unit, lambda v: f"{v:g}")(float(value))


def fmt_date(ms: float | None) -> str:
    """asv's dates (milliseconds since the epoch) in UTC, to the minute."""
    if ms is None or not isinstance(ms, (int, float)) or not math.isfinite(ms):
        return "unknown"
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
