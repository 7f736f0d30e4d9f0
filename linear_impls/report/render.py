"""Rendering: the analysis tables laid out as one self-contained HTML page through Jinja2.

Templates live in ``templates/`` (autoescaping on: every string from results files,
machine.json, plugins, pytest-benchmark or the checks file is escaped by Jinja, never
by hand), the stylesheet in ``style.css``; both ship with the package.  The view
models built here only pick and arrange what ``analysis`` computed; numbers are
written by ``units.fmt`` alone.
"""

from __future__ import annotations

import math
import urllib.parse
from dataclasses import dataclass, field
from importlib import resources

import jinja2
import pandas as pd
from markupsafe import Markup

from .. import checks as checks_mod
from .. import dropin, functioncounts, history, registry, sweep
from ..units import fmt, fmt_date
from . import analysis, modelstep, plots, roofline
from .load import GPU_FACTS, short, unit_of

# Changed cases drawn as charts (the table lists them all).
MAX_HISTORY_CHARTS = 12
MAX_HISTORY_ROWS = 200


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("linear_impls.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["fmt"] = fmt
    env.filters["date"] = fmt_date
    env.filters["short"] = short
    env.filters["pct"] = lambda v: f"{v:.0%}" if isinstance(v, float) and math.isfinite(v) else "–"
    env.globals["asv_link"] = asv_link
    env.globals["speedup_colour"] = speedup_colour
    env.globals["chart"] = lambda c: Markup(_ENV.get_template("chart.svg.j2").render(chart=c))
    return env


def asv_link(asv_html: str, benchmark: str, machine: str, params: dict[str, str] | None = None) -> str:
    """A link into asv's own pages, at one benchmark, machine and parameter values."""
    query = {"machine": machine}
    for k, v in (params or {}).items():
        query[f"p-{k}"] = repr(v)
    return f"{asv_html}#{benchmark}?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}"


class Ids:
    """Unique anchors for headings, in page order."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"


@dataclass
class Section:
    id: str
    title: str
    template: str
    context: dict
    toc: list[tuple[str, str]] = field(default_factory=list)


# --- view models ---------------------------------------------------------------------------


def _shape_title(s: str, shape: sweep.Shape | None, mode: str) -> str:
    if shape is None:
        return s
    return (f"{shape.rows} rows, {shape.in_features} -> {shape.out_features}; "
            f"{shape.flops(mode) / 1e6:.3g} MFLOP ({mode})")


def speedup_colour(speedup: float) -> str:
    """A heatmap colour on a log scale centred on 1x: red slower, green faster, saturated at 4x either way."""
    if not isinstance(speedup, float) or not math.isfinite(speedup) or speedup <= 0:
        return "#fff"
    t = max(-1.0, min(1.0, math.log2(speedup) / 2))
    end = (0xe0, 0x66, 0x66) if t < 0 else (0x57, 0xbb, 0x8a)
    r, g, b = (round(255 + (c - 255) * abs(t)) for c in end)
    return f"#{r:02x}{g:02x}{b:02x}"


def _perf_cell(r, miss) -> dict:
    if r is not None and r.status == "ok":
        tip = f"IQR {r.iqr_rel:.0%} of median" if math.isfinite(r.iqr_rel) else "no quartiles"
        if math.isfinite(r.number) and math.isfinite(r.repeat):
            tip += f"; {int(r.repeat)} samples of {int(r.number)} calls"
        if getattr(r, "speedup_source", "") == "interleaved":
            tip += (f"; speedup {fmt(r.speedup, 'speedup')} over {registry.baseline()}, timed interleaved with it, "
                    f"{fmt(r.low, 'speedup')} to {fmt(r.high, 'speedup')} over its processes and its null control "
                    f"({registry.baseline()} against itself: {fmt(r.null_low, 'speedup')} to "
                    f"{fmt(r.null_high, 'speedup')}): {r.speedup_verdict}")
        elif r.within_noise:
            tip += f"; its interval overlaps {registry.baseline()}'s: within noise"
        return {"state": "ok", "best": bool(r.best), "noisy": bool(r.noisy), "tip": tip, "value": r.value,
                "gflops": r.gflops, "speedup": r.speedup, "colour": speedup_colour(r.speedup),
                "same": bool(r.within_noise)}
    if r is not None and r.status == "failed":
        return {"state": "failed"}
    if miss is not None and not miss[1]:
        return {"state": "missing"}
    return {"state": "na", "reason": miss[1] if miss else "not run"}


def perf_tables(rated: pd.DataFrame, file_id: int, impls_all: list[str], miss_lookup: dict, machine: str,
                asv_html: str, swept: list[sweep.Sweep]) -> list[dict]:
    """A table per device, dtype and mode of one file: implementations x shapes (those measured,
    and those of the sweeps the run was asked for, ``swept``)."""
    sub = rated[rated["file"] == file_id]
    shown = sub[sub["status"] != "skipped"]
    groups = set(shown[["device", "dtype", "mode"]].drop_duplicates().itertuples(index=False, name=None))
    tables = []
    for device in analysis.order({g[0] for g in groups}, sweep.DEVICES):
        for dtype in analysis.order({g[1] for g in groups if g[0] == device}, sweep.DTYPES):
            for mode in analysis.order({g[2] for g in groups if g[:2] == (device, dtype)}, sweep.MODES):
                grp = sub[(sub["device"] == device) & (sub["dtype"] == dtype) & (sub["mode"] == mode)]
                shape_cols = set(grp.loc[grp["status"] != "skipped", "shape"])
                for sw in swept:
                    if dtype in sw.dtypes:
                        shape_cols |= set(sw.shapes)
                shapes = analysis.order(shape_cols, sweep.ALL_SHAPES)
                info = analysis.shape_info(shapes)
                cells = {(r.impl, r.shape): r for r in grp.itertuples(index=False)}
                bench = grp["benchmark"].iloc[0] if len(grp) else ""
                link = asv_link(asv_html, bench, machine, {"dtype": dtype, "device": device}) if bench else asv_html
                rows = [(impl, [_perf_cell(cells.get((impl, s)), miss_lookup.get((file_id, impl, s, dtype, device,
                                                                                   mode)))
                                for s in shapes])
                        for impl in analysis.impl_order(set(grp["impl"]) | set(impls_all))]
                tables.append({"device": device, "dtype": dtype, "mode": mode, "link": link,
                               "shapes": [(s, _shape_title(s, info[s], mode)) for s in shapes], "rows": rows})
    return tables


def memory_tables(mem: pd.DataFrame) -> list[dict]:
    tables = []
    for (bench, device, dtype, mode), grp in mem.groupby(["benchmark", "device", "dtype", "mode"], sort=True):
        table = grp.pivot_table(index="impl", columns="shape", values="value", aggfunc="first")
        status = grp.pivot_table(index="impl", columns="shape", values="status", aggfunc="first")
        shapes = analysis.order(table.columns, sweep.ALL_SHAPES)
        best = table.min(axis=0)
        rows = []
        for impl in analysis.impl_order(table.index):
            cells = []
            for s in shapes:
                v = table.at[impl, s]
                st = status.at[impl, s] if s in status.columns and impl in status.index else None
                if st == "failed":
                    cells.append({"state": "failed"})
                elif isinstance(v, float) and math.isfinite(v):
                    cells.append({"state": "ok", "value": v, "best": bool(v == best[s])})
                else:
                    cells.append({"state": "na"})
            rows.append((impl, cells))
        tables.append({"benchmark": bench, "device": device, "dtype": dtype, "mode": mode, "shapes": shapes,
                       "rows": rows})
    return tables


def perf_section(d, ids: Ids, asv_html: str) -> Section:
    miss_lookup = {(r.file, r.impl, r.shape, r.dtype, r.device, r.mode): (r.status, r.reason)
                   for r in d.missing.itertuples(index=False)}
    files, toc = [], []
    for f in d.latest_files.itertuples(index=False):
        fmiss = d.missing[(d.missing["file"] == f.file) & (d.missing["status"] == "missing")]
        unexplained = fmiss[fmiss["reason"] == ""]
        mem = d.memory[(d.memory["file"] == f.file) & (d.memory["status"] != "skipped")]
        head = ids("perf")
        title = f"{f.machine} — {f.env}"
        swept = d.sweeps_for(f.file)
        toc.append((head, title))
        files.append({"id": head, "title": title, "commit": f.commit, "date": f.date,
                      "only_older": d.only_older.get(f.file, 0),
                      "tables": perf_tables(d.rated, f.file, d.impls_all, miss_lookup, f.machine, asv_html, swept),
                      "n_missing": len(fmiss), "n_by_design": len(fmiss) - len(unexplained),
                      "n_unexplained": len(unexplained),
                      "sweeps": ", ".join(sw.name for sw in swept),
                      "not_timed": [dt for dt in dict.fromkeys(dt for sw in swept for dt in sw.dtypes)
                                    if dt not in set(d.rated.loc[d.rated["file"] == f.file, "dtype"])],
                      "missing_summary": analysis.missing_summary(unexplained).itertuples(index=False),
                      "memory": memory_tables(mem) if len(mem) else []})
    return Section("perf", f"Speedup over {registry.baseline()} per shape (latest commit)", "perf.html.j2",
                   {"files": files, "noisy_iqr": analysis.NOISY_IQR, "speedup_factor": analysis.SPEEDUP_FACTOR},
                   toc)


def verdict_block(d) -> list[dict]:
    """Per latest file: a row per device, dtype and mode with the ranking, fastest-per-shape and failures."""
    table = analysis.verdicts(d.rated)
    since = {(r.machine, r.env): r for r in d.since.itertuples(index=False)}
    blocks = []
    for f in d.latest_files.itertuples(index=False):
        mine = table[table["file"] == f.file]
        if mine.empty:
            continue
        impls = analysis.impl_order({impl for ranking in mine["ranking"] for impl, _g, _k in ranking})
        rows = []
        for r in mine.itertuples(index=False):
            by_impl = {impl: (g, k) for impl, g, k in r.ranking}
            top = r.ranking[0][0] if r.ranking else None
            rows.append({"label": f"{r.dtype} · {r.mode}" + ("" if r.device == "cpu" else f" · {r.device}"),
                         "n": r.n_shapes, "top": top, "fastest": r.fastest, "failed": r.failed,
                         "interleaved": bool(r.interleaved),
                         "cells": [(impl, *by_impl[impl], speedup_colour(by_impl[impl][0])) if impl in by_impl
                                   else (impl, None, 0, "#fff") for impl in impls]})
        blocks.append({"machine": f.machine, "env": f.env, "commit": f.commit, "impls": impls, "rows": rows,
                       "since": since.get((f.machine, f.env))})
    return blocks


def machines_section(d, ids: Ids) -> Section:
    cols = list(d.latest_files.sort_values(["machine", "env"]).itertuples(index=False))
    table = analysis.side_by_side(d.latest)
    families, toc = [], []
    for key, grp in table.groupby(["device", "dtype", "mode"], sort=False):
        hid = ids("side")
        title = " · ".join(key)
        toc.append((hid, title))
        rows = []
        for (shape, impl), case in grp.groupby(["shape", "impl"], sort=False):
            by_file = {r.file: r for r in case.itertuples(index=False)}
            cells = []
            for c in cols:
                r = by_file.get(c.file)
                if r is None:
                    cells.append({"state": "na"})
                elif r.failed:
                    cells.append({"state": "failed"})
                else:
                    cells.append({"state": "ok", "parts": [(label, getattr(r, kind), kind)
                                                           for kind, label in analysis.side_kinds()
                                                           if math.isfinite(getattr(r, kind))]})
            rows.append({"shape": shape, "impl": impl, "cells": cells})
        families.append({"id": hid, "title": title, "n_cases": len(rows), "rows": rows})
    return Section("machines", "Machines and environments side by side", "machines.html.j2",
                   {"columns": cols, "families": families, "kinds": analysis.side_kinds()}, toc)


def model_section(d, ids: Ids) -> Section | None:
    """Each model's linear time per step, per implementation, and its cases' shares; None
    without a model's sweep file or without its cases in the latest results."""
    totals, cases = d.model_totals, d.model_cases
    if totals is None or totals.empty:
        return None
    meta = d.latest_files.set_index("file")
    blocks, toc = [], []
    group = ["file", "sweep", "device", "dtype", "mode"]
    for key, g in totals.groupby(group, sort=True):
        m = meta.loc[key[0]]
        mine = cases[(cases[group] == pd.Series(key, index=group)).all(axis=1)]
        hid = ids("model")
        toc.append((hid, f"{key[1]}: {m['machine']} — {m['env']}, {key[3]} {key[2]} {key[4]}"))
        sf = next(s for s in d.models if s.name == key[1])
        blocks.append({"id": hid, "sweep": key[1], "source": sf.source, "machine": m["machine"], "env": m["env"],
                       "device": key[2], "dtype": key[3], "mode": key[4], "rows": g.to_dict("records"),
                       "cases": mine.to_dict("records"), "fastest": modelstep.FASTEST_PER_SHAPE})
    return Section("model", "Your model: linear time per step", "model.html.j2",
                   {"blocks": blocks, "baseline": registry.baseline(), "speedup_factor": analysis.SPEEDUP_FACTOR},
                   toc)


def peak_section(d, ids: Ids) -> Section:
    blocks = []
    for p in roofline.rooflines(d.rated, d.ceilings, d.dispatch):
        title = f"{p['machine']} · {p['device']} · {p['dtype']}"
        blocks.append({**p, "id": ids("peak"), "title": title, "best": p["best"].itertuples(index=False),
                       "chart": plots.roofline(p["points"], p["peak"], p["bandwidth"], title)})
    return Section("peak", "Roofline: each case against the machine's ceilings", "peak.html.j2",
                   {"blocks": blocks, "squarish": roofline.SQUARISH})


def compile_section(d, ids: Ids) -> Section | None:
    """The compiled variants against their eager implementations; None when none was measured."""
    table = analysis.compile_table(d.rated, d.latest)
    if table.empty:
        return None
    blocks, toc = [], []
    for f in d.latest_files.itertuples(index=False):
        mine = table[table["file"] == f.file]
        if len(mine):
            hid = ids("compile")
            toc.append((hid, f"{f.machine} — {f.env}"))
            blocks.append({"id": hid, "machine": f.machine, "env": f.env, "rows": mine.to_dict("records"),
                           "ratios": bool(mine["speedup_ratio"].notna().any())})
    return Section("compile", "torch.compile: steady state, compile time, when it pays", "compile.html.j2",
                   {"blocks": blocks, "speedup_factor": analysis.SPEEDUP_FACTOR}, toc)


def dispatch_section(d, ids: Ids) -> Section | None:
    """What each implementation dispatches to, per shape, from the latest files' op traces,
    and the cases whose dispatch changed between commits; None when nothing was traced."""
    traces = d.dispatch
    if traces is None or traces.empty:
        return None
    changes = d.dispatch_changes if d.dispatch_changes is not None else traces.iloc[0:0]
    latest = traces[traces["file"].isin(d.latest_files["file"]) & (traces["mode"] == "forward_backward")]
    # The training step's trace holds the forward's ops too: one cell shows both phases.
    if latest.empty:
        latest = traces[traces["file"].isin(d.latest_files["file"])]
    blocks, toc = [], []
    changes_id = ids("dispatch-changes")
    if len(changes):
        toc.append((changes_id, f"dispatch changed ({len(changes)})"))
    meta = d.latest_files.set_index("file")
    for (file_id, dtype, device), g in latest.groupby(["file", "dtype", "device"], sort=True):
        shapes = analysis.order(set(g["shape"]), sweep.ALL_SHAPES)
        cells = {(r.impl, r.shape): r for r in g.itertuples(index=False)}
        rows = [(impl, [cells.get((impl, s)) for s in shapes])
                for impl in analysis.impl_order(set(g["impl"]))]
        hid = ids("dispatch")
        m = meta.loc[file_id]
        toc.append((hid, f"{m['machine']} — {m['env']}: {dtype} {device}"))
        blocks.append({"id": hid, "machine": m["machine"], "env": m["env"], "dtype": dtype, "device": device,
                       "shapes": shapes, "rows": rows})
    return Section("dispatch", "What each way dispatches to (aten ops per call)", "dispatch.html.j2",
                   {"blocks": blocks, "changes": changes.to_dict("records"), "changes_id": changes_id}, toc)


def checks_section(checks: pd.DataFrame | None, failed: pd.DataFrame, impls: list[str], asv_html: str) -> Section:
    ctx = {"given": checks is not None,
           "counts": analysis.check_counts(checks, failed, impls).to_dict("records"),
           "failing": [], "torch_error": None, "asv_failed": [], "asv_html": asv_html, "dropin": []}
    if checks is not None:
        ctx["failing"] = list(analysis.failing_checks(checks).itertuples(index=False))
        ctx["dropin"] = analysis.dropin_table(checks).to_dict("records")
        ctx["dropin_checks"] = [(c, c.removeprefix(dropin.PREFIX)) for c in dropin.CHECKS]
        worst = analysis.torch_error(checks)
        if len(worst):
            dtypes = analysis.order(set(worst["dtype"]), sweep.DTYPES)
            lookup = {(r.impl, r.dtype): r for r in worst.itertuples(index=False)}
            ctx["torch_error"] = {
                "dtypes": dtypes,
                "allowed": ", ".join(f"{d} {checks_mod.TORCH_ERROR_MULTIPLE[d][0]:g}× / "
                                     f"{checks_mod.TORCH_ERROR_MULTIPLE[d][1]:g}×"
                                     for d in dtypes if d in checks_mod.TORCH_ERROR_MULTIPLE),
                "rows": [(impl, [lookup.get((impl, dt)) for dt in dtypes])
                         for impl in analysis.impl_order(set(worst["impl"]))]}
    ctx["asv_failed"] = list(failed.sort_values(["machine", "impl", "benchmark", "shape", "dtype"])
                             .itertuples(index=False))
    return Section("checks", "Check status", "checks.html.j2", ctx)


def history_section(d, ids: Ids, asv_html: str, thresholds: dict[str, float],
                    order: dict[str, int]) -> tuple[Section, int]:
    frame = d.frame[d.frame["status"] != "skipped"]
    changes = d.changes
    limits = deciding_limits(thresholds)
    blocks, n_found, charts = [], 0, 0
    for (machine, env), fl in d.files.groupby(["machine", "env"], sort=True):
        fl = history.ordered_commits(fl, order)
        block = {"id": ids("hist"), "machine": machine, "env": env, "n_commits": len(fl),
                 "first": fl.iloc[0], "last": fl.iloc[-1], "rows": [], "more": 0, "charts": [],
                 "charts_cut": False,
                 "have": sorted(set(frame.loc[frame["file"].isin(fl["file"]), "kind"]) & set(history.deciding()))}
        blocks.append(block)
        if len(fl) < 2:
            continue
        mine = changes[(changes["machine"] == machine) & (changes["env"] == env)]
        n_found += len(mine)
        mine = mine.assign(_up=mine["ratio"] < 1).sort_values(["_up", "after_commit", "ratio"],
                                                              ascending=[True, True, False])
        for _, r in mine.head(MAX_HISTORY_ROWS).iterrows():
            deltas = r.get("deltas")
            block["rows"].append({
                "r": r.to_dict(), "link": asv_link(asv_html, r["benchmark"], str(machine), {"impl": r["impl"],
                                                                                 "shape": r["shape"]}),
                "deltas": None if deltas is None else [(x.change, functioncounts.short_function(x.function))
                                                       for x in deltas]})
        block["more"] = max(len(mine) - MAX_HISTORY_ROWS, 0)
        block["n_changes"] = len(mine)
        for _, r in mine.iterrows():
            if charts >= MAX_HISTORY_CHARTS:
                block["charts_cut"] = True
                break
            charts += 1
            ser = history.series(frame, d.files, r.to_dict(), order)
            block["charts"].append((f"{r['impl']} {r['shape']} {r['dtype']} {r['device']} {r['mode']}: {r['kind']}",
                                    plots.history_chart(ser, r)))
    ctx = {"metrics": history.metrics(), "limits": limits, "noise": history.WALL_TIME_NOISE, "blocks": blocks,
           "max_charts": MAX_HISTORY_CHARTS, "max_rows": MAX_HISTORY_ROWS, "asv_html": asv_html}
    return Section("history", "History: what changed, and why", "history.html.j2", ctx), n_found


def pytest_section(pb, ids: Ids) -> Section:
    rated = analysis.rates(pb.frame)
    counts = rated.groupby("file").size()
    runs = pb.files.sort_values(["date", "path"], na_position="first").reset_index(drop=True)
    heads = {run: ids("pb") for run in runs["file"]}
    measured = runs[runs["file"].isin(counts.index)]
    compare_id = ids("pb-compare")
    toc = [(compare_id, "latest run against the previous one")]
    compare = None
    if len(measured) >= 2:
        old, new = measured.iloc[-2], measured.iloc[-1]
        m = analysis.compare_runs(rated, int(old["file"]), int(new["file"]))
        compare = {"old": old, "new": new, "rows": list(m.itertuples(index=False)),
                   "n_new_only": int(counts.get(new["file"], 0)) - len(m),
                   "n_old_only": int(counts.get(old["file"], 0)) - len(m),
                   "other_machine": old["machine"] != new["machine"] or old["cpu"] != new["cpu"],
                   "n_slower": int((m["change"] == "slower").sum())}
    blocks = []
    for _, run in runs.iloc[::-1].iterrows():
        toc.append((heads[run["file"]], run["path"]))
        sub = rated[rated["file"] == run["file"]]
        tables = []
        groups = sub[["device", "dtype", "mode", "shape"]].drop_duplicates()
        keys = sorted(groups.itertuples(index=False, name=None), key=lambda g: (
            analysis.order(groups["device"], sweep.DEVICES).index(g[0]),
            analysis.order(groups["dtype"], sweep.DTYPES).index(g[1]),
            analysis.order(groups["mode"], sweep.MODES).index(g[2]),
            analysis.order(groups["shape"], sweep.ALL_SHAPES).index(g[3])))
        for device, dtype, mode, shape in keys:
            grp = sub[(sub["device"] == device) & (sub["dtype"] == dtype) & (sub["mode"] == mode)
                      & (sub["shape"] == shape)].set_index("impl")
            tables.append({"device": device, "dtype": dtype, "mode": mode, "shape": shape,
                           "rows": [(impl, grp.loc[impl].to_dict()) for impl in analysis.impl_order(grp.index)]})
        blocks.append({"id": heads[run["file"]], "run": run, "tables": tables})
    ctx = {"runs": runs, "heads": heads, "counts": counts, "compare": compare, "compare_id": compare_id,
           "blocks": blocks, "noisy_iqr": analysis.NOISY_IQR, "factor": analysis.RUN_FACTOR}
    return Section("pytest", "pytest-benchmark runs", "pytest.html.j2", ctx, toc)


def env_section(d, impls: list[str], with_files: bool) -> Section:
    rows = []
    if with_files:
        n_commits = d.files.groupby(["machine", "env"])["commit"].nunique()
        for _, f in d.latest_files.iterrows():
            info = {**f["params"], **d.machines.get(f["machine"], {})}
            try:
                ram = f"{int(info.get('ram', '')) / 2**30:.1f} GiB"
            except ValueError:
                ram = str(info.get("ram", ""))
            rows.append({"f": f, "info": info, "ram": ram, "threads": _threads(f), "gpu": _gpu_text(f),
                         "precision": _precision_text(f),
                         "n_commits": int(n_commits.get((f["machine"], f["env"]), 0))})
    registered = set(registry.names())
    impl_rows = [(impl, registry.get(impl) if impl in registered else None) for impl in analysis.impl_order(impls)]
    return Section("env", "Environment", "env.html.j2", {"rows": rows, "impls": impl_rows,
                                                         "with_files": with_files,
                                                         "with_gpu": any(r["gpu"] for r in rows),
                                                         "with_precision": any(r["precision"] for r in rows)})


def _gpu_text(f: pd.Series) -> str:
    """The GPU as its Environment benchmarks recorded it: capability, multiprocessors, memory,
    CUDA runtime and driver ("" where none was recorded)."""
    get = {k: str(f.get(k) or "") for k in GPU_FACTS}
    if not get["cuda_capability"]:
        return ""
    parts = [f"sm {get['cuda_capability']}"]
    if get["cuda_multiprocessors"]:
        parts.append(f"{get['cuda_multiprocessors']} SMs")
    if get["cuda_memory_gib"]:
        parts.append(f"{get['cuda_memory_gib']} GiB")
    if get["cuda_runtime"]:
        parts.append(f"CUDA {get['cuda_runtime']}")
    if get["cuda_driver"]:
        drv = int(get["cuda_driver"])
        parts.append(f"driver API {drv // 1000}.{drv % 1000 // 10}")
    return ", ".join(parts)


def _precision_text(f: pd.Series) -> str:
    tf32, reduced = str(f.get("tf32") or ""), str(f.get("reduced_precision_reduction") or "")
    if not tf32 and not reduced:
        return ""
    return ("TF32 allowed" if tf32 == "1" else "full float32") + (
        ", half-precision partial sums allowed" if reduced == "1" else ", float32 partial sums")


def _threads(f: pd.Series) -> str:
    if f.get("threads"):
        return str(f["threads"])
    for src in (f["params"], f["env_vars"]):
        if isinstance(src, dict) and src.get(sweep.THREADS_ENV):
            return str(src[sweep.THREADS_ENV])
    marker = sweep.THREADS_ENV
    if marker in f["env"]:
        digits = "".join(ch for ch in f["env"].split(marker, 1)[1].lstrip("=-_") if ch.isdigit())
        if digits:
            return digits
    return "unknown"


def deciding_limits(thresholds: dict[str, float]) -> str:
    """The deciding metrics' thresholds, as the page states them: "instructions per call 2%, ..."."""
    return ", ".join(f"{m.label} {history.threshold_for(m.asv_name, thresholds):.0%}"
                     for m in history.metrics() if m.decides)


def render_page(summary, sections: list[Section], asv_html: str, results_dir, verdict: list[dict],
                thresholds: dict[str, float]) -> str:
    css = Markup(resources.files("linear_impls.report").joinpath("style.css").read_text(encoding="utf-8"))
    numbered = [Section(s.id, f"{i}. {s.title}", s.template, s.context, s.toc) for i, s in enumerate(sections, 1)]
    return _ENV.get_template("page.html.j2").render(summary=summary, sections=numbered, asv_html=asv_html,
                                                    results_dir=str(results_dir), css=css,
                                                    baseline=registry.baseline(), verdict=verdict,
                                                    limits=deciding_limits(thresholds),
                                                    # The catalogue's units as it is now (a test may add a metric).
                                                    unit_of=unit_of())


_ENV = _environment()
