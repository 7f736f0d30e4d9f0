"""Your model's answer: each way's linear time per training or inference step of a captured
model (a sweep file from ``linbench capture``), from the cases its sweep timed.

Pure pandas on the rated table (``analysis.rates``), nothing formatted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import registry
from ..verdict import classify
from .analysis import SPEEDUP_FACTOR

FASTEST_PER_SHAPE = "fastest per shape"
MODEL_TOTALS = ["file", "sweep", "device", "dtype", "mode", "impl", "seconds_per_step", "calls", "seconds_per_call",
                "speedup", "low", "high", "verdict", "speedup_source", "complete", "missing"]
MODEL_CASES = ["file", "sweep", "device", "dtype", "mode", "shape", "count", "modules", "base_seconds",
               "share", "best_impl", "best_speedup", "best_low", "best_high", "saves"]


def model_steps(rated: pd.DataFrame, models) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each model's linear time per step, per implementation, from the latest files.

    ``models``: sweep files (``sweepfile.SweepFile``), each case with its calls per step.  An
    implementation's time per call is the baseline's wall time over its speedup (the
    interleaved one where measured), so a step's total is Σ count × base / speedup, and its
    speedup the baseline's total over it; the interval takes every case's interval at its
    end (the cases' errors are not independent of each other's sign, so this is the honest
    bound).  An implementation missing a case (skipped, failed) has no total, only what it
    misses.  The row "fastest per shape" takes each case's fastest way measured, so its total
    is never above any complete implementation's.  Returns (totals, cases): the second is
    each case's share of the baseline's step and what its fastest way saves there."""
    base = registry.baseline()
    totals: list[dict] = []
    case_rows: list[dict] = []
    ok = rated[(rated["status"] == "ok") & rated["speedup"].notna()]
    for sf in models:
        counts = sf.counts()
        modules: dict[tuple, list[str]] = {}
        for c in sf.cases:
            modules.setdefault(c.key, []).extend(c.modules)
        by_group: dict[tuple, dict] = {}
        for (shape, dtype, device), n in counts.items():
            by_group.setdefault((dtype, device), {})[shape] = n
        for file_id, per_file in ok.groupby("file", sort=True):
            for mode in sf.modes:
                for (dtype, device), shapes in by_group.items():
                    g = per_file[(per_file["dtype"] == dtype) & (per_file["device"] == device)
                                 & (per_file["mode"] == mode) & per_file["shape"].isin(list(shapes))]
                    bases = g[g["impl"] == base].set_index("shape")["value"]
                    if g.empty or bases.empty:
                        continue
                    key = {"file": file_id, "sweep": sf.name, "device": device, "dtype": dtype, "mode": mode}
                    timed = [s for s in shapes if s in bases.index]
                    base_total = sum(shapes[s] * bases[s] for s in timed)
                    calls = sum(shapes[s] for s in timed)
                    untimed = [s for s in shapes if s not in bases.index]
                    best: dict[str, tuple] = {}
                    for impl, rows in g.groupby("impl", sort=False):
                        rows = rows.set_index("shape")
                        missing = [s for s in shapes if s not in rows.index]
                        if missing or untimed:
                            totals.append({**key, "impl": impl, "seconds_per_step": np.nan, "calls": calls,
                                           "seconds_per_call": np.nan, "speedup": np.nan, "low": np.nan,
                                           "high": np.nan, "verdict": "", "speedup_source": "", "complete": False,
                                           "missing": ", ".join(missing or untimed)})
                        for s in timed:
                            if s in rows.index:
                                r = rows.loc[s]
                                if s not in best or r["speedup"] > best[s][1]:
                                    best[s] = (impl, float(r["speedup"]), _or(r.get("low"), r["speedup"]),
                                               _or(r.get("high"), r["speedup"]), r.get("speedup_source"))
                        if missing or untimed:
                            continue
                        totals.append(_model_total(key, impl, shapes, bases, rows))
                    if timed and not untimed:
                        rows = pd.DataFrame([{"shape": s, "speedup": best[s][1], "low": best[s][2],
                                              "high": best[s][3], "speedup_source": best[s][4]}
                                             for s in timed]).set_index("shape")
                        totals.append(_model_total(key, FASTEST_PER_SHAPE, shapes, bases, rows))
                    for s in timed:
                        b_impl, b_sp, b_lo, b_hi, _source = best[s]
                        case_rows.append({**key, "shape": s, "count": shapes[s],
                                          "modules": ", ".join(dict.fromkeys(modules.get((s, dtype, device), []))),
                                          "base_seconds": float(bases[s]),
                                          "share": shapes[s] * bases[s] / base_total if base_total else np.nan,
                                          "best_impl": b_impl, "best_speedup": b_sp, "best_low": b_lo,
                                          "best_high": b_hi, "saves": shapes[s] * bases[s] * (1 - 1 / b_sp)})
    t = pd.DataFrame(totals, columns=MODEL_TOTALS)
    if len(t):
        t = t.assign(_order=t["seconds_per_step"].fillna(np.inf)).sort_values(
            ["file", "sweep", "device", "dtype", "mode", "_order"], kind="stable").drop(columns="_order")
    c = pd.DataFrame(case_rows, columns=MODEL_CASES)
    if len(c):
        c = c.sort_values(["file", "sweep", "device", "dtype", "mode", "share"],
                          ascending=[True, True, True, True, True, False], kind="stable")
    return t.reset_index(drop=True), c.reset_index(drop=True)


def _or(value, default) -> float:
    return float(value) if value is not None and value == value else float(default)


def _model_total(key: dict, impl: str, shapes: dict[str, int], bases: pd.Series, rows: pd.DataFrame) -> dict:
    base_total = sum(n * bases[s] for s, n in shapes.items())
    total = sum(n * bases[s] / float(rows.loc[s, "speedup"]) for s, n in shapes.items())
    # The slowest end of every case's interval, then the fastest end.
    slow = sum(n * bases[s] / _or(rows.loc[s].get("low"), rows.loc[s, "speedup"]) for s, n in shapes.items())
    fast = sum(n * bases[s] / _or(rows.loc[s].get("high"), rows.loc[s, "speedup"]) for s, n in shapes.items())
    speedup, low, high = base_total / total, base_total / slow, base_total / fast
    calls = sum(shapes.values())
    # Wall-time quotients (older results) get neither an interval nor a verdict, as on the first screen.
    interleaved = (rows.loc[list(shapes), "speedup_source"] == "interleaved").all() \
        if "speedup_source" in rows else False
    return {**key, "impl": impl, "seconds_per_step": total, "calls": calls, "seconds_per_call": total / calls,
            "speedup": speedup, "low": low if interleaved else np.nan, "high": high if interleaved else np.nan,
            "verdict": classify(1.0, 1 / speedup, SPEEDUP_FACTOR, significant=not (low <= 1 <= high))
            if interleaved else "", "speedup_source": "interleaved" if interleaved else "wall time",
            "complete": True, "missing": ""}
