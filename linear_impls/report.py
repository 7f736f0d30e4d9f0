"""The summary page ``reports/index.html``: one self-contained HTML file built from asv results.

Reads ``<results>/<machine>/machine.json`` and ``<results>/<machine>/<commit>-<env>.json``
(asv's layout), turns every results file into one long pandas DataFrame (a row per
machine, commit, benchmark and parameter combination) and renders:

1. per machine, device, dtype and mode, a table implementations x shapes of the
   median time, GFLOP/s and speedup against the registry's baseline (latest commit), best per
   shape highlighted, noisy cells marked, default-sweep cases that were not measured
   marked as missing;
2. the achieved fraction of the machine's peak and a roofline-style plot (inline SVG);
3. gate status per implementation (``linbench check --json`` output, if given) and
   benchmarks that failed in asv;
4. the history: every change over all commits in the metrics a shared machine cannot
   fake (instruction counts, the ratio to F.linear; ``history.py``), each with the
   functions whose counts changed and a chart of the case over commits;
5. the environment: machine, CPU, torch, threads, commit, date.

Given pytest-benchmark JSON (``benchmarks/quick_gate`` saved with ``--benchmark-save``
or ``--benchmark-json``), a section before the environment shows each run's tables
(median, IQR, rounds, GFLOP/s, speedup) and the latest run against the previous one;
with such runs the page builds without asv results too.

No network, no JavaScript, no external CSS: the page opens from ``file://``.  Every
string that comes from results files, machine.json, pytest-benchmark files, plugins or
the gates file is HTML-escaped.
"""

from __future__ import annotations

import ast
import datetime as _dt
import html
import io
import json
import math
import os
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import gates as gates_mod
from . import history, instructions, registry, sweep

# (q75 - q25) / median above this marks a measurement as noisy.
NOISY_IQR = 0.2
# A change is reported when new/old is beyond these and the 99% CIs do not overlap.
SLOWER_RATIO = 1.10
FASTER_RATIO = 1 / 1.10
# A shape counts as square-ish (for the peak) when its rows, in and out features are
# within this factor of each other.
SQUARISH = 4.0

# Fixed parameters of the known benchmarks (matched on "Class.method", any module).
_FIXED = {
    "Inference.time_forward": {"mode": "forward", "kind": "time"},
    "Training.time_forward_backward": {"mode": "forward_backward", "kind": "time"},
    "HostMemory.peakmem_step": {"device": "cpu", "kind": "memory"},
    "DeviceMemory.track_peak_bytes": {"device": "cuda", "kind": "memory"},
    "RelativeToTorch.track_ratio": {"kind": "ratio"},
    "Instructions.track_instructions": {"kind": "instructions"},
}
# Parameter names of the known benchmarks, used when benchmarks.json is not there.
_KNOWN_PARAM_NAMES = {
    "Inference.time_forward": ["impl", "shape", "dtype", "device"],
    "Training.time_forward_backward": ["impl", "shape", "dtype", "device"],
    "HostMemory.peakmem_step": ["impl", "shape", "dtype", "mode"],
    "DeviceMemory.track_peak_bytes": ["impl", "shape", "dtype", "mode"],
    "RelativeToTorch.track_ratio": ["impl", "shape", "dtype", "device", "mode"],
    "Instructions.track_instructions": ["impl", "shape", "dtype", "device", "mode"],
}
_STAT_COLUMNS = {
    "stats_ci_99_a": "ci_a",
    "stats_ci_99_b": "ci_b",
    "stats_q_25": "q25",
    "stats_q_75": "q75",
    "stats_number": "number",
    "stats_repeat": "repeat",
}
_REQUIRED_KEYS = ("commit_hash", "env_name", "date", "result_columns", "results")
CASE_KEYS = ["benchmark", "impl", "shape", "dtype", "device", "mode"]


class ReportError(Exception):
    """Input the report cannot be built from; the message is one line for the user."""


@dataclass
class ReportSummary:
    out: Path
    n_results_files: int  # results files read (corrupt ones excluded)
    n_cases: int  # measured cases (every benchmark) in the latest commit of each machine/env
    n_failed: int = 0  # cases that failed in asv in the latest commit of each machine/env
    n_missing: int = 0  # default-sweep timed cases not measured in the latest commit
    n_machines: int = 0
    n_commits: int = 0
    n_pytest_runs: int = 0  # pytest-benchmark files read
    n_pytest_cases: int = 0  # linbench benchmarks in them, all runs
    n_changes: int = 0  # changes found over the history (instruction counts, ratios)
    warnings: list[str] = field(default_factory=list)


def e(value: object) -> str:
    """HTML-escape anything shown on the page (text and attribute values)."""
    return html.escape(str(value), quote=True)


# --- loading ------------------------------------------------------------------------------


def _short(name: str) -> str:
    """``bench_linear.Inference.time_forward`` -> ``Inference.time_forward``."""
    return ".".join(name.split(".")[-2:])


def _unrepr(value: object) -> str:
    """asv stores parameter values as repr strings: ``"'f_linear'"`` -> ``f_linear``."""
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return value
        return parsed if isinstance(parsed, str) else str(parsed)
    return str(value)


def _load_json(path: Path) -> object:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _benchmark_meta(results_dir: Path, warnings: list[str]) -> dict:
    path = results_dir / "benchmarks.json"
    if not path.is_file():
        return {}
    try:
        data = _load_json(path)
    except (OSError, ValueError) as exc:
        warnings.append(f"{path.name}: unreadable ({type(exc).__name__}: {exc}); using built-in parameter names")
        return {}
    return data if isinstance(data, dict) else {}


def _param_names(name: str, meta: dict, n_axes: int) -> list[str] | None:
    entry = meta.get(name)
    if isinstance(entry, dict) and isinstance(entry.get("param_names"), list):
        names = [str(n) for n in entry["param_names"]]
        if len(names) == n_axes:
            return names
    names = _KNOWN_PARAM_NAMES.get(_short(name))
    if names is not None and len(names) == n_axes:
        return list(names)
    return None


def _numeric(values: object, n: int) -> np.ndarray:
    """A stats column as floats (None and NaN -> NaN); a missing column -> all NaN."""
    if not isinstance(values, list) or len(values) != n:
        return np.full(n, np.nan)
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)


def _benchmark_frame(name: str, entry: object, columns: list, meta: dict) -> pd.DataFrame | str:
    """One benchmark of one results file as a DataFrame, or the reason it is unusable."""
    if not isinstance(entry, list) or len(entry) > len(columns):
        return "not a list aligned with result_columns"
    row = dict(zip(columns, entry, strict=False))
    params = row.get("params") or []
    if not isinstance(params, list) or not all(isinstance(axis, list) for axis in params):
        return "params is not a list of lists"
    names = _param_names(name, meta, len(params))
    if names is None and _short(name) in _KNOWN_PARAM_NAMES:
        return f"{len(params)} parameter axes, expected {len(_KNOWN_PARAM_NAMES[_short(name)])}"
    if names is None or "impl" not in names or "shape" not in names:
        return "no impl/shape parameters"
    axes = [[_unrepr(v) for v in axis] for axis in params]
    n = math.prod(len(a) for a in axes)
    result = row.get("result")
    if not isinstance(result, list) or len(result) != n:
        return f"result has {len(result) if isinstance(result, list) else 'no'} values, params give {n}"
    frame = pd.MultiIndex.from_product(axes, names=names).to_frame(index=False)
    frame["value"] = _numeric(result, n)
    failed = np.fromiter((v is None for v in result), dtype=bool, count=n)
    frame["status"] = np.where(failed, "failed", np.where(np.isnan(frame["value"].to_numpy()), "skipped", "ok"))
    for src, dst in _STAT_COLUMNS.items():
        frame[dst] = _numeric(row.get(src), n)
    fixed = _FIXED.get(_short(name), {})
    for col in ("device", "mode"):
        if col not in frame.columns:
            frame[col] = fixed.get(col, "")
    if "dtype" not in frame.columns:
        frame["dtype"] = ""
    method = name.rsplit(".", 1)[-1]
    frame["kind"] = fixed.get("kind") or ("time" if method.startswith("time_") else "memory")
    frame["benchmark"] = name
    return frame[["benchmark", "impl", "shape", "dtype", "device", "mode", "kind", "value", "status",
                  *_STAT_COLUMNS.values()]]


@dataclass
class _Data:
    frame: pd.DataFrame  # one row per file, benchmark and parameter combination
    files: pd.DataFrame  # one row per results file
    machines: dict[str, dict]  # machine dir -> machine.json content
    warnings: list[str]


def load_results(results_dir: Path, *, allow_empty: bool = False) -> _Data:
    """Every usable results file under ``results_dir`` as one long DataFrame.

    With ``allow_empty`` (other input is given), a missing folder or one without
    usable results gives no rows instead of ReportError.
    """
    results_dir = Path(results_dir)
    if not results_dir.exists() and not allow_empty:
        raise ReportError(f"results directory {results_dir} does not exist (run `asv run` first)")
    if results_dir.exists() and not results_dir.is_dir():
        raise ReportError(f"results path {results_dir} is not a directory")
    warnings: list[str] = []
    meta = _benchmark_meta(results_dir, warnings)
    machines: dict[str, dict] = {}
    frames: list[pd.DataFrame] = []
    files: list[dict] = []
    ignored: set[str] = set()
    paths = sorted(p for p in results_dir.glob("*/*.json") if p.name != "machine.json")
    for mdir in sorted({p.parent for p in paths}):
        info: dict = {}
        mpath = mdir / "machine.json"
        if mpath.is_file():
            try:
                loaded = _load_json(mpath)
                if isinstance(loaded, dict):
                    info = loaded
                else:
                    warnings.append(f"{mdir.name}/machine.json: not a JSON object; ignored")
            except (OSError, ValueError) as exc:
                warnings.append(f"{mdir.name}/machine.json: unreadable ({type(exc).__name__}); ignored")
        machines[mdir.name] = info
    for path in paths:
        rel = f"{path.parent.name}/{path.name}"
        try:
            data = _load_json(path)
        except (OSError, ValueError) as exc:
            warnings.append(f"{rel}: skipped, not valid JSON ({type(exc).__name__}: {exc})")
            continue
        if not isinstance(data, dict) or any(k not in data for k in _REQUIRED_KEYS):
            missing = [k for k in _REQUIRED_KEYS if not isinstance(data, dict) or k not in data]
            warnings.append(f"{rel}: skipped, not an asv results file (missing {', '.join(missing)})")
            continue
        columns, results = data["result_columns"], data["results"]
        if not isinstance(columns, list) or not isinstance(results, dict):
            warnings.append(f"{rel}: skipped, result_columns/results have the wrong type")
            continue
        try:
            date = float(data["date"])
        except (TypeError, ValueError):
            date = float("nan")
        file_id = len(files)
        params = data.get("params") if isinstance(data.get("params"), dict) else {}
        files.append({
            "file": file_id,
            "path": rel,
            "machine": path.parent.name,
            "env": str(data["env_name"]),
            "commit": str(data["commit_hash"]),
            "date": date,
            "params": params,
            "requirements": data.get("requirements") if isinstance(data.get("requirements"), dict) else {},
            "env_vars": data.get("env_vars") if isinstance(data.get("env_vars"), dict) else {},
            "python": data.get("python") or params.get("python", ""),
        })
        for name, entry in results.items():
            if str(name).endswith(".Environment.track_threads"):
                # The suite records the thread count it pinned as a benchmark of its own.
                value = dict(zip(columns, entry, strict=False)).get("result") if isinstance(entry, list) else None
                value = value[0] if isinstance(value, list) and value else value
                if isinstance(value, (int, float)) and value == value:
                    files[-1]["threads"] = int(value)
                continue
            frame = _benchmark_frame(str(name), entry, columns, meta)
            if isinstance(frame, str):
                if frame == "no impl/shape parameters":
                    ignored.add(str(name))
                else:
                    warnings.append(f"{rel}: benchmark {name} skipped ({frame})")
                continue
            frame["file"] = file_id
            frames.append(frame)
    if ignored:
        warnings.append(f"ignored benchmarks without impl/shape parameters: {', '.join(sorted(ignored))}")
    if not files and not allow_empty:
        if paths:
            raise ReportError(f"no usable asv results in {results_dir}: all {len(paths)} results files "
                              f"were skipped ({warnings[-1] if warnings else 'unreadable'})")
        raise ReportError(f"no asv results in {results_dir}: expected <machine>/<commit>-<env>.json files "
                          "(run `asv run` first)")
    file_frame = pd.DataFrame(files) if files else pd.DataFrame({
        "file": pd.Series(dtype=int), "date": pd.Series(dtype=float),
        **{c: pd.Series(dtype=object) for c in ("path", "machine", "env", "commit", "params", "requirements",
                                                "env_vars", "python")}})
    if frames:
        frame = pd.concat(frames, ignore_index=True)
    else:
        text = ["benchmark", "impl", "shape", "dtype", "device", "mode", "kind", "status"]
        frame = pd.DataFrame({**{c: pd.Series(dtype=object) for c in text},
                              **{c: pd.Series(dtype=float) for c in ["value", *_STAT_COLUMNS.values()]},
                              "file": pd.Series(dtype=int)})
    frame = frame.merge(file_frame[["file", "machine", "env", "commit", "date"]], on="file", how="left")
    return _Data(frame, file_frame, machines, warnings)


# --- derived quantities ------------------------------------------------------------------


def _shape_info(shapes: Iterable[str]) -> dict[str, sweep.Shape | None]:
    info: dict[str, sweep.Shape | None] = {}
    for s in shapes:
        try:
            info[s] = sweep.parse_shape(s)
        except sweep.ShapeError:
            info[s] = None
    return info


def _itemsize(dtype: str) -> int | None:
    try:
        return sweep.dtype_of(dtype).itemsize
    except ValueError:
        return None


def _latest_files(files: pd.DataFrame) -> pd.DataFrame:
    """The newest results file (by commit date) of each machine and environment."""
    ordered = files.sort_values(["machine", "env", "date", "commit"], na_position="first")
    return ordered.groupby(["machine", "env"], sort=True).tail(1)


def _add_rates(latest: pd.DataFrame) -> pd.DataFrame:
    """GFLOP/s, speedup against the baseline, best-per-shape and noise flags (timed rows)."""
    t = latest[latest["kind"] == "time"].copy()
    shapes = _shape_info(t["shape"].unique())
    flops_of = {(s, m): (sh.flops(m) if sh is not None and m in sweep.MODE_FLOP_FACTOR else np.nan)
                for s, sh in shapes.items() for m in sweep.MODES}
    t["flops"] = [flops_of.get(k, np.nan) for k in zip(t["shape"], t["mode"], strict=True)]
    ok = t["status"] == "ok"
    t["gflops"] = np.where(ok, t["flops"] / t["value"] / 1e9, np.nan)
    group = ["file", "benchmark", "shape", "dtype", "device", "mode"]
    base = t.loc[ok & (t["impl"] == registry.baseline()), group + ["value"]].rename(columns={"value": "base"})
    t = t.merge(base, on=group, how="left")
    t["speedup"] = t["base"] / t["value"]
    t["best"] = ok.to_numpy() & (t["value"] == t.groupby(group)["value"].transform("min"))
    with np.errstate(invalid="ignore", divide="ignore"):
        t["iqr_rel"] = (t["q75"] - t["q25"]) / t["value"]
    t["noisy"] = t["iqr_rel"] > NOISY_IQR
    return t


def _expected_skip(impl: str, shape: sweep.Shape | None, dtype: str, device: str, mode: str) -> str | None:
    """Why the default sweep skips a case by design (limits, budget); None if it should run.

    Memory-based skips depend on the machine that ran and cannot be reproduced here.
    """
    if shape is None:
        return "malformed shape"
    if impl in registry.names():
        limit = registry.get(impl).limits.excludes(dtype=dtype, device=device, rank=len(shape.input_shape))
        if limit:
            return f"{impl}: {limit}"
        lim = registry.get(impl).limits
        workspace = lim.workspace(shape.rows, shape.in_features, shape.out_features, _itemsize(dtype) or 4) \
            if lim.workspace else 0
    else:
        workspace = 0
    budget = sweep.SWEEPS["default"].max_call_seconds
    est = sweep.estimated_seconds(shape, dtype, device, mode, workspace)
    if est > budget:
        return f"estimated {est * 1e3:.0f} ms a call, over the default sweep's {budget * 1e3:.0f} ms budget"
    return None


def _missing_cases(latest: pd.DataFrame, file_ids: Iterable[int], impls: list[str]) -> pd.DataFrame:
    """Default-sweep timed cases not measured in the latest file of each machine/env.

    Columns: file, benchmark, impl, shape, dtype, device, mode, status (failed or
    missing), reason (why it is skipped by design, or empty).
    """
    default = sweep.SWEEPS["default"]
    timed = latest[latest["kind"] == "time"]
    bench_names = {mode: name for name, mode in timed[["benchmark", "mode"]].drop_duplicates().itertuples(index=False)}
    for short, fixed in _FIXED.items():
        if fixed["kind"] == "time" and fixed["mode"] not in bench_names:
            bench_names[fixed["mode"]] = f"bench_linear.{short}"
    rows = []
    present = timed[timed["status"] != "skipped"]
    for file_id in file_ids:
        devices = ["cpu"] + sorted(set(present.loc[present["file"] == file_id, "device"]) - {"cpu"})
        idx = pd.MultiIndex.from_product([[file_id], impls, list(default.shapes), list(default.dtypes), devices,
                                          list(sweep.MODES)],
                                         names=["file", "impl", "shape", "dtype", "device", "mode"])
        rows.append(idx.to_frame(index=False))
    expected = pd.concat(rows, ignore_index=True)
    expected["benchmark"] = expected["mode"].map(bench_names)
    measured = timed.loc[timed["status"] == "ok", ["file", *CASE_KEYS]].assign(_m=True)
    merged = expected.merge(measured, on=["file", *CASE_KEYS], how="left")
    missing = merged[merged["_m"].isna()].drop(columns="_m")
    failed = timed.loc[timed["status"] == "failed", ["file", *CASE_KEYS]].assign(status="failed")
    missing = missing.merge(failed, on=["file", *CASE_KEYS], how="left")
    missing["status"] = missing["status"].fillna("missing")
    shapes = _shape_info(default.shapes)
    keys = missing[["impl", "shape", "dtype", "device", "mode"]].drop_duplicates()
    reasons = {k: _expected_skip(k[0], shapes[k[1]], *k[2:]) for k in keys.itertuples(index=False, name=None)}
    missing["reason"] = [reasons[k] or "" for k in
                         missing[["impl", "shape", "dtype", "device", "mode"]].itertuples(index=False, name=None)]
    return missing.reset_index(drop=True)


# --- formatting ----------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
        if abs(seconds) >= scale or unit == "ns":
            return f"{_num(seconds / scale)} {unit}"
    return f"{seconds} s"  # pragma: no cover


def _num(v: float) -> str:
    if not math.isfinite(v):
        return "–"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.01 or a == 0:
        return f"{v:.2f}"
    return f"{v:.2g}"


def fmt_gflops(g: float) -> str:
    return f"{_num(g)} GFLOP/s" if g is not None and math.isfinite(g) else "–"


def fmt_bytes(b: float) -> str:
    if b is None or not math.isfinite(b):
        return "–"
    return f"{b / 2**20:.1f} MiB"


def fmt_date(ms: float) -> str:
    if ms is None or not math.isfinite(ms):
        return "unknown"
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _order(values: Iterable[str], preferred: Iterable[str]) -> list[str]:
    values = set(values)
    pref = [v for v in preferred if v in values]
    return pref + sorted(values - set(pref))


def _impl_order(values: Iterable[str]) -> list[str]:
    values = list(values)
    base = registry.baseline()
    return ([base] if base in values else []) + sorted(set(values) - {base})


def _asv_link(asv_html: str, benchmark: str, machine: str, params: dict[str, str] | None = None) -> str:
    query = {"machine": machine}
    for k, v in (params or {}).items():
        query[f"p-{k}"] = repr(v)
    return f"{asv_html}#{benchmark}?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}"


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"


# --- plots ---------------------------------------------------------------------------------


def _svg(fig) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "linbench", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.find("<svg"):]


def _roofline_svg(points: pd.DataFrame, peak: float, title: str) -> str:
    """Log-log GFLOP/s against arithmetic intensity, one marker series per implementation."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, headless

    fig = Figure(figsize=(7.5, 4.0))
    # Fixed margins, legend on the right: bbox_inches="tight" would draw everything twice.
    fig.subplots_adjust(left=0.1, right=0.74, bottom=0.13, top=0.9)
    ax = fig.add_subplot()
    markers = "osD^v<>pP*hX"
    for i, (impl, grp) in enumerate(points.groupby("impl", sort=True)):
        label = str(impl).replace("$", r"\$")
        ax.scatter(grp["ai"], grp["gflops"], marker=markers[i % len(markers)], s=28, alpha=0.8, label=label)
    if peak and math.isfinite(peak):
        ax.axhline(peak, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(title.replace("$", r"\$"), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), borderaxespad=0)
    return _svg(fig)


# --- page sections -------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222;max-width:110em}
h1{font-size:1.6em}h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.5em}h4{margin:1em 0 .3em}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .45em;vertical-align:top}
th{background:#f2f2f2;text-align:left}
td.cell{text-align:right;white-space:nowrap}
td.cell .g,td.cell .s{display:block;color:#555;font-size:.9em}
td.best{background:#d9f2d9;font-weight:bold}
td.noisy{outline:2px dashed #e0a000;outline-offset:-3px}
td.noisy .t::after{content:" ~";color:#c08000}
td.failed,span.failed{background:#f8d0d0;color:#900}
td.missing{background:#eee;color:#888;font-style:italic}
td.na{color:#aaa}
.warn{background:#fff4d6;border-left:4px solid #e0a000;padding:.4em .8em}
.ok{color:#070}.bad{color:#b00;font-weight:bold}
.legend span{display:inline-block;padding:.1em .5em;margin-right:.5em;border:1px solid #ccc}
.bar{display:inline-block;height:.8em;background:#6a9fd8;vertical-align:middle}
.plot svg{max-width:100%;height:auto}
h4+.plot svg{max-width:60em}
code{background:#f4f4f4;padding:0 .2em}
nav ul{columns:2}
"""

LEGEND = (
    '<p class="legend">Each cell: median time, GFLOP/s, speedup against <code>{baseline}</code> (the '
    'registry\'s baseline; >1 is faster). '
    '<span class="best" style="background:#d9f2d9;font-weight:bold">best</span> fastest for the shape; '
    '<span style="outline:2px dashed #e0a000">noisy ~</span> interquartile range over '
    f'{NOISY_IQR:.0%} of the median; '
    '<span style="background:#f8d0d0;color:#900">failed</span> failed in asv (gate or error); '
    '<span style="background:#eee;font-style:italic">missing</span> in the default sweep but not measured; '
    '<span style="color:#aaa">n/a</span> not run (outside the sweep, limits or budget).</p>'
)


def _only_in_older(frame: pd.DataFrame, latest_files: pd.DataFrame) -> dict[int, int]:
    """Per latest file: cases measured by an older commit of its machine/env but not by it."""
    ok = frame[frame["status"] == "ok"]
    is_latest = ok["file"].isin(latest_files["file"])
    keys = ["machine", "env", *CASE_KEYS]
    older = ok.loc[~is_latest, keys].drop_duplicates()
    newest = ok.loc[is_latest, [*keys, "file"]]
    if older.empty:
        return {}
    m = older.merge(newest, on=keys, how="left", indicator=True)
    gone = m[m["_merge"] == "left_only"].merge(latest_files[["machine", "env", "file"]], on=["machine", "env"],
                                               suffixes=("_x", ""))
    return {int(k): int(v) for k, v in gone.groupby("file").size().items()}


def _section_tables(rates: pd.DataFrame, missing: pd.DataFrame, files: pd.DataFrame, memory: pd.DataFrame,
                    impls_all: list[str], ids: _Ids, asv_html: str,
                    only_older: dict[int, int]) -> tuple[str, list[tuple[str, str]]]:
    out: list[str] = [LEGEND.replace("{baseline}", e(registry.baseline()))]
    toc: list[tuple[str, str]] = []
    default = sweep.SWEEPS["default"]
    miss_lookup = {(r.file, r.impl, r.shape, r.dtype, r.device, r.mode): (r.status, r.reason)
                   for r in missing.itertuples(index=False)}
    for f in files.itertuples(index=False):
        sub = rates[rates["file"] == f.file]
        fmiss = missing[missing["file"] == f.file]
        head_id = ids("perf")
        title = f"{f.machine} — {f.env}"
        toc.append((head_id, title))
        out.append(f'<h3 id="{e(head_id)}">{e(title)}</h3>')
        out.append(f"<p>commit <code>{e(f.commit[:12])}</code>, {e(fmt_date(f.date))}</p>")
        if only_older.get(f.file):
            out.append(f'<p class="warn">{only_older[f.file]} cases measured by earlier commits of this machine and '
                       f'environment were not run for this one: see the <a href="{e(asv_html)}">asv pages</a> '
                       "for them.</p>")
        shown = sub[sub["status"] != "skipped"]
        groups = set(shown[["device", "dtype", "mode"]].drop_duplicates().itertuples(index=False, name=None))
        if not groups:
            out.append("<p>No timed case was measured in this results file.</p>")
        for device in _order({g[0] for g in groups}, sweep.DEVICES):
            for dtype in _order({g[1] for g in groups if g[0] == device}, sweep.DTYPES):
                for mode in _order({g[2] for g in groups if g[:2] == (device, dtype)}, sweep.MODES):
                    grp = sub[(sub["device"] == device) & (sub["dtype"] == dtype) & (sub["mode"] == mode)]
                    out.append(_perf_table(grp, f.file, device, dtype, mode, impls_all, default, miss_lookup,
                                           f.machine, asv_html))
        n_missing = int((fmiss["status"] == "missing").sum())
        n_by_design = int(((fmiss["status"] == "missing") & (fmiss["reason"] != "")).sum())
        unexplained = fmiss[(fmiss["status"] == "missing") & (fmiss["reason"] == "")]
        if n_missing:
            out.append(f'<p class="warn">{n_missing} timed cases of the default sweep were not measured: '
                       f"{n_by_design} are skipped by design (limits or time budget), "
                       f"{len(unexplained)} are missing (sweep not run, interrupted, or skipped for memory).</p>")
        if len(unexplained):
            out.append(_missing_summary(unexplained))
        mem = memory[(memory["file"] == f.file) & (memory["status"] != "skipped")]
        if len(mem):
            out.append(_memory_tables(mem))
    return "\n".join(out), toc


def _perf_table(grp: pd.DataFrame, file_id: int, device: str, dtype: str, mode: str, impls_all: list[str],
                default: sweep.Sweep, miss_lookup: dict, machine: str, asv_html: str) -> str:
    shown = grp[grp["status"] != "skipped"]
    shape_cols = set(shown["shape"])
    if dtype in default.dtypes:
        shape_cols |= set(default.shapes)
    shapes = _order(shape_cols, sweep.ALL_SHAPES)
    impls = _impl_order(set(grp["impl"]) | set(impls_all))
    cells = {(r.impl, r.shape): r for r in grp.itertuples(index=False)}
    bench = grp["benchmark"].iloc[0] if len(grp) else ""
    info = _shape_info(shapes)
    head = "".join(
        f'<th title="{e(_shape_title(s, info[s], mode))}">{e(s)}</th>' for s in shapes
    )
    link = _asv_link(asv_html, bench, machine, {"dtype": dtype, "device": device}) if bench else asv_html
    rows = [f'<h4>{e(device)} · {e(dtype)} · {e(mode)} <small>(<a href="{e(link)}">asv</a>)</small></h4>',
            f'<table class="perf"><tr><th>implementation</th>{head}</tr>']
    for impl in impls:
        tds = []
        for s in shapes:
            r = cells.get((impl, s))
            miss = miss_lookup.get((file_id, impl, s, dtype, device, mode))
            if r is not None and r.status == "ok":
                classes = ["cell"] + (["best"] if r.best else []) + (["noisy"] if r.noisy else [])
                tip = f"IQR {r.iqr_rel:.0%} of median" if math.isfinite(r.iqr_rel) else "no quartiles"
                if math.isfinite(r.number) and math.isfinite(r.repeat):
                    tip += f"; {int(r.repeat)} samples of {int(r.number)} calls"
                speed = f"{r.speedup:.2f}×" if math.isfinite(r.speedup) else "–"
                tds.append(f'<td class="{" ".join(classes)}" title="{e(tip)}"><span class="t">{e(fmt_time(r.value))}'
                           f'</span><span class="g">{e(fmt_gflops(r.gflops))}</span>'
                           f'<span class="s">{e(speed)}</span></td>')
            elif r is not None and r.status == "failed":
                tds.append('<td class="cell failed">failed</td>')
            elif miss is not None and not miss[1]:
                tds.append('<td class="cell missing" title="in the default sweep, not measured">missing</td>')
            else:
                reason = miss[1] if miss else "not run"
                tds.append(f'<td class="cell na" title="{e(reason)}">n/a</td>')
        rows.append(f"<tr><th>{e(impl)}</th>{''.join(tds)}</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _shape_title(s: str, shape: sweep.Shape | None, mode: str) -> str:
    if shape is None:
        return s
    return (f"{shape.rows} rows, {shape.in_features} -> {shape.out_features}; "
            f"{shape.flops(mode) / 1e6:.3g} MFLOP ({mode})")


def _missing_summary(unexplained: pd.DataFrame) -> str:
    """Missing cases grouped by (impl, dtype, device, mode) with their shapes."""
    grouped = (unexplained.groupby(["device", "dtype", "mode", "impl"], sort=True)["shape"]
               .agg(lambda s: ", ".join(_order(s, sweep.ALL_SHAPES))).reset_index())
    grouped = grouped.groupby(["device", "dtype", "mode", "shape"], sort=True)["impl"] \
        .agg(lambda s: ", ".join(_impl_order(s))).reset_index()
    rows = ["<details><summary>missing default-sweep cases</summary><table>"
            "<tr><th>device</th><th>dtype</th><th>mode</th><th>implementations</th><th>shapes</th></tr>"]
    for r in grouped.itertuples(index=False):
        rows.append(f"<tr><td>{e(r.device)}</td><td>{e(r.dtype)}</td><td>{e(r.mode)}</td>"
                    f"<td>{e(r.impl)}</td><td>{e(r.shape)}</td></tr>")
    rows.append("</table></details>")
    return "\n".join(rows)


# What the side-by-side tables show per machine, in the order shown in a cell.
_SIDE_KINDS = (("time", "wall time"), ("ratio", "time over F.linear's, one thread"),
               ("instructions", "instructions per call"))


def _section_machines(latest: pd.DataFrame, files: pd.DataFrame, ids: _Ids) -> tuple[str, list[tuple[str, str]]]:
    """Every case measured on two or more machines or environments, a column for each (their latest commits)."""
    cols = list(files.sort_values(["machine", "env"]).itertuples(index=False))
    shown = latest[latest["kind"].isin([k for k, _ in _SIDE_KINDS]) & (latest["status"] != "skipped")]
    out = ["<p>The same cases on each machine and environment (its latest commit), so runners can be "
           "compared: each cell shows " + ", ".join(f"<b>{e(label)}</b>" for _, label in _SIDE_KINDS)
           + " where that machine recorded it.  Wall times compare machines as they are; the ratio "
           "compares each way with torch's own on the same machine, so it differs between machines "
           "only where they differ in kind (CPU, GPU, library paths).  Only cases measured by at least "
           "two columns are listed.</p>"]
    toc: list[tuple[str, str]] = []
    head = "".join(f"<th>{e(c.machine)}<br><small>{e(c.env)}<br><code>{e(c.commit[:8])}</code></small></th>"
                   for c in cols)
    by_case = {key: grp for key, grp in shown.groupby(["device", "dtype", "mode", "shape", "impl"], sort=False)}
    def rank(values: tuple, value: str) -> int:
        return values.index(value) if value in values else len(values)

    families = sorted({k[:3] for k, grp in by_case.items() if grp["file"].nunique() >= 2},
                      key=lambda g: (rank(sweep.DEVICES, g[0]), rank(sweep.DTYPES, g[1]), rank(sweep.MODES, g[2]), g))
    for device, dtype, mode in families:
        cases = [(k, g) for k, g in by_case.items() if k[:3] == (device, dtype, mode) and g["file"].nunique() >= 2]
        shapes = _order({k[3] for k, _ in cases}, sweep.ALL_SHAPES)
        impls = _impl_order({k[4] for k, _ in cases})
        hid = ids("side")
        title = f"{device} · {dtype} · {mode}"
        toc.append((hid, title))
        rows = [f'<h3 id="{e(hid)}">{e(title)}</h3><details><summary>{len(cases)} cases on '
                f"{len(cols)} machines and environments</summary><table><tr><th>shape</th><th>implementation</th>"
                f"{head}</tr>"]
        cells = dict(cases)
        for shape in shapes:
            for impl in impls:
                grp = cells.get((device, dtype, mode, shape, impl))
                if grp is None:
                    continue
                tds = []
                for c in cols:
                    mine = grp[grp["file"] == c.file]
                    if mine.empty:
                        tds.append('<td class="cell na">–</td>')
                        continue
                    if (mine["status"] == "failed").all():
                        tds.append('<td class="cell failed">failed</td>')
                        continue
                    parts = []
                    for kind, label in _SIDE_KINDS:
                        v = mine.loc[(mine["kind"] == kind) & (mine["status"] == "ok"), "value"]
                        if len(v):
                            parts.append(f'<span title="{e(label)}">{e(_fmt_metric(float(v.iloc[0]), kind))}</span>')
                    tds.append(f'<td class="cell">{"<br>".join(parts) or "failed"}</td>')
                rows.append(f"<tr><td>{e(shape)}</td><th>{e(impl)}</th>{''.join(tds)}</tr>")
        rows.append("</table></details>")
        out.append("".join(rows))
    return "\n".join(out), toc


def _memory_tables(mem: pd.DataFrame) -> str:
    out = ["<details><summary>peak memory</summary>"]
    for (bench, device, dtype, mode), grp in mem.groupby(["benchmark", "device", "dtype", "mode"], sort=True):
        table = grp.pivot_table(index="impl", columns="shape", values="value", aggfunc="first")
        status = grp.pivot_table(index="impl", columns="shape", values="status", aggfunc="first")
        shapes = _order(table.columns, sweep.ALL_SHAPES)
        best = table.min(axis=0)
        out.append(f"<h4>{e(_short(bench))}: {e(device)} · {e(dtype)} · {e(mode)}</h4>")
        out.append("<table><tr><th>implementation</th>" + "".join(f"<th>{e(s)}</th>" for s in shapes) + "</tr>")
        for impl in _impl_order(table.index):
            tds = []
            for s in shapes:
                v = table.at[impl, s]
                st = status.at[impl, s] if s in status.columns and impl in status.index else None
                if st == "failed":
                    tds.append('<td class="cell failed">failed</td>')
                elif isinstance(v, float) and math.isfinite(v):
                    cls = "cell best" if v == best[s] else "cell"
                    tds.append(f'<td class="{cls}">{e(fmt_bytes(v))}</td>')
                else:
                    tds.append('<td class="cell na">n/a</td>')
            out.append(f"<tr><th>{e(impl)}</th>{''.join(tds)}</tr>")
        out.append("</table>")
    out.append("</details>")
    return "\n".join(out)


def _squareness(shape: sweep.Shape) -> float:
    dims = (shape.rows, shape.in_features, shape.out_features)
    return max(dims) / max(min(dims), 1)


def _section_peak(rates: pd.DataFrame, files: pd.DataFrame, ids: _Ids) -> str:
    ok = rates[(rates["status"] == "ok") & rates["gflops"].notna() & np.isfinite(rates["gflops"])].copy()
    if ok.empty:
        return "<p>No measured timed case: nothing to compare with a peak.</p>"
    shapes = _shape_info(ok["shape"].unique())
    items = {d: _itemsize(d) for d in ok["dtype"].unique()}
    ok["ai"] = [shapes[s].arithmetic_intensity(items[d]) if shapes[s] is not None and items[d] else np.nan
                for s, d in zip(ok["shape"], ok["dtype"], strict=True)]
    ok["sq"] = [_squareness(shapes[s]) if shapes[s] is not None else np.inf for s in ok["shape"]]
    ok = ok.merge(files[["file", "machine", "env"]], on="file", how="left", suffixes=("", "_f"))
    out = [f"<p>Peak: the best GFLOP/s of any implementation on the largest square-ish shape present "
           f"(rows, in and out features within {SQUARISH:g}× of each other; the largest shape if none is), "
           "per machine, device and dtype.  Fraction: each implementation's best GFLOP/s over all its cases "
           "divided by that peak (above 100% is possible on other shapes).  Plot: forward-mode cases.</p>"]
    for (file_id, device, dtype), grp in ok.groupby(["file", "device", "dtype"], sort=True):
        f = files[files["file"] == file_id].iloc[0]
        cand = grp[grp["sq"] <= SQUARISH]
        if cand.empty:
            cand = grp
        top_shape = cand.loc[cand["flops"].idxmax(), "shape"]
        on_top = cand[cand["shape"] == top_shape]
        peak_row = on_top.loc[on_top["gflops"].idxmax()]
        peak = float(peak_row["gflops"])
        best = grp.loc[grp.groupby("impl")["gflops"].idxmax()]
        title = f"{f['machine']} · {device} · {dtype}"
        out.append(f'<h3 id="{e(ids("peak"))}">{e(title)}</h3>')
        out.append(f"<p>peak {e(fmt_gflops(peak))} ({e(peak_row['impl'])}, {e(top_shape)}, "
                   f"{e(peak_row['mode'])}); environment {e(f['env'])}</p>")
        rows = ["<table><tr><th>implementation</th><th>best GFLOP/s</th><th>at</th><th>fraction of peak</th></tr>"]
        for r in best.set_index("impl").loc[_impl_order(best["impl"])].reset_index().itertuples(index=False):
            frac = r.gflops / peak if peak > 0 else float("nan")
            width = max(0.0, min(frac, 1.0)) * 10 if math.isfinite(frac) else 0
            rows.append(f"<tr><th>{e(r.impl)}</th><td class='cell'>{e(fmt_gflops(r.gflops))}</td>"
                        f"<td>{e(r.shape)} {e(r.mode)}</td><td class='cell'>{frac:.0%} "
                        f"<span class='bar' style='width:{width:.2f}em'></span></td></tr>")
        rows.append("</table>")
        out.append("\n".join(rows))
        pts = grp[(grp["mode"] == "forward") & grp["ai"].notna()]
        if pts.empty:
            pts = grp[grp["ai"].notna()]
        if not pts.empty:
            out.append(f'<div class="plot">{_roofline_svg(pts, peak, title)}</div>')
    return "\n".join(out)


def _load_gates(path: Path, warnings: list[str]) -> pd.DataFrame:
    try:
        data = _load_json(path)
    except FileNotFoundError:
        raise ReportError(f"gates file {path} does not exist (write it with `linbench check --json > FILE`)") \
            from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"gates file {path} is not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, list):
        raise ReportError(f"gates file {path} is not a JSON array (the output of `linbench check --json`)")
    keys = ["impl", "check", "case", "dtype", "device", "status", "reason"]
    good = [r for r in data if isinstance(r, dict) and "impl" in r and r.get("status") in ("pass", "fail", "skip")]
    if len(good) < len(data):
        warnings.append(f"{path.name}: {len(data) - len(good)} gate rows without impl or a pass/fail/skip status "
                        "skipped")
    frame = pd.DataFrame(good, columns=keys + ["shape", "torch_error_ratio", "torch_error_ratio_max"])
    for k in keys:
        frame[k] = frame[k].fillna("").astype(str)
    for k in ("torch_error_ratio", "torch_error_ratio_max"):  # absent from older gates files
        frame[k] = pd.to_numeric(frame[k], errors="coerce")
    return frame


def _torch_error_table(gates: pd.DataFrame) -> str:
    """The worst error against float64 of each implementation and dtype, as a multiple of torch's own."""
    have = gates[gates["torch_error_ratio"].notna() & (gates["status"] == "pass")]
    if have.empty:
        return ""
    worst = have.groupby(["impl", "dtype"])[["torch_error_ratio", "torch_error_ratio_max"]].max()
    dtypes = _order(set(have["dtype"]), sweep.DTYPES)
    allowed = ", ".join(f"{d} {gates_mod.TORCH_ERROR_MULTIPLE[d][0]:g}× / {gates_mod.TORCH_ERROR_MULTIPLE[d][1]:g}×"
                        for d in dtypes if d in gates_mod.TORCH_ERROR_MULTIPLE)
    rows = ["<h4>Error against float64, as a multiple of torch's own</h4>"
            "<p>The worst over every passing check of each implementation: its RMSE against a float64 "
            "reference over torch's <code>F.linear</code> RMSE on the same inputs, then the same for the "
            "largest element, each over torch's error plus a quarter of one rounding (so torch's own "
            f"F.linear reads 1× or less).  A check fails above {e(allowed)} "
            "(README, \"Checks\").</p><table><tr><th>implementation</th>"
            + "".join(f"<th>{e(d)}<br><small>RMSE / largest</small></th>" for d in dtypes) + "</tr>"]
    for impl in _impl_order(set(have["impl"])):
        cells = []
        for d in dtypes:
            if (impl, d) in worst.index:
                r = worst.loc[(impl, d)]
                cells.append(f"<td class='cell'>{r['torch_error_ratio']:.2f}× / {r['torch_error_ratio_max']:.2f}×</td>")
            else:
                cells.append("<td class='cell na'>–</td>")
        rows.append(f"<tr><th>{e(impl)}</th>{''.join(cells)}</tr>")
    rows.append("</table>")
    return "".join(rows)


def _section_gates(gates: pd.DataFrame | None, failed: pd.DataFrame, impls_all: list[str], asv_html: str) -> str:
    out = []
    impls = set(failed["impl"]) | set(impls_all)
    counts = pd.DataFrame()
    if gates is None:
        out.append("<p>No gate results given (write them with <code>linbench check --json &gt; gates.json</code> "
                   "and pass <code>--gates gates.json</code>).</p>")
    else:
        impls |= set(gates["impl"])
        counts = gates.pivot_table(index="impl", columns="status", values="check", aggfunc="count", fill_value=0)
    asv_failed = failed.groupby("impl").size() if len(failed) else pd.Series(dtype=int)
    rows = ["<table><tr><th>implementation</th><th>gates pass</th><th>fail</th><th>skip</th>"
            "<th>failed in asv</th><th>status</th></tr>"]
    for impl in _impl_order(impls):
        c = {s: int(counts.at[impl, s]) if impl in counts.index and s in counts.columns else 0
             for s in ("pass", "fail", "skip")}
        nf = int(asv_failed.get(impl, 0))
        bad = c["fail"] or nf
        if gates is None:
            gate_cells = "<td>–</td><td>–</td><td>–</td>"
        else:
            gate_cells = (f"<td class='cell'>{c['pass']}</td><td class='cell{' failed' if c['fail'] else ''}'>"
                          f"{c['fail']}</td><td class='cell'>{c['skip']}</td>")
        rows.append(f"<tr><th>{e(impl)}</th>{gate_cells}<td class='cell{' failed' if nf else ''}'>{nf}</td>"
                    f"<td class='{'bad' if bad else 'ok'}'>{'FAIL' if bad else 'ok'}</td></tr>")
    rows.append("</table>")
    out.append("\n".join(rows))
    if gates is not None:
        fails = gates[gates["status"] == "fail"]
        if len(fails):
            fails = fails.assign(where=fails["check"] + " " + fails["case"] + " " + fails["dtype"] + " "
                                 + fails["device"])
            agg = fails.groupby(["impl", "reason"], sort=True)["where"].agg(["count", lambda s: ", ".join(s[:8])])
            agg.columns = ["count", "cases"]
            out.append("<h4>Failing gates</h4><table><tr><th>implementation</th><th>reason</th><th>count</th>"
                       "<th>cases (first 8)</th></tr>")
            for (impl, reason), r in agg.iterrows():
                out.append(f"<tr><th>{e(impl)}</th><td>{e(reason)}</td><td class='cell'>{int(r['count'])}</td>"
                           f"<td>{e(r['cases'])}</td></tr>")
            out.append("</table>")
        else:
            out.append("<p class='ok'>No gate failed.</p>")
        out.append(_torch_error_table(gates))
    if len(failed):
        out.append("<h4>Benchmarks that failed in asv (latest commit)</h4>"
                   "<p>asv records no reason; the gate's reason is in the asv log and in <code>linbench check</code>."
                   "</p><table><tr><th>machine</th><th>implementation</th><th>benchmark</th><th>shape</th>"
                   "<th>dtype</th><th>device / mode</th></tr>")
        for r in failed.sort_values(["machine", "impl", "benchmark", "shape", "dtype"]).itertuples(index=False):
            link = _asv_link(asv_html, r.benchmark, r.machine, {"impl": r.impl, "shape": r.shape})
            out.append(f"<tr><td>{e(r.machine)}</td><th>{e(r.impl)}</th><td><a href='{e(link)}'>"
                       f"{e(_short(r.benchmark))}</a></td><td>{e(r.shape)}</td><td>{e(r.dtype)}</td>"
                       f"<td>{e(r.device)} {e(r.mode)}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p class='ok'>No benchmark failed in asv in the latest results.</p>")
    return "\n".join(out)


# Changed cases drawn as charts (the table lists them all): each is one SVG of a few kB.
MAX_HISTORY_CHARTS = 12
MAX_HISTORY_ROWS = 200


def _fmt_metric(value: float, kind: str) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    if kind == "instructions":
        return f"{value / 1e3:,.1f}k" if value < 1e6 else f"{value / 1e6:,.2f}M"
    if kind == "ratio":
        return f"{value:.3g}×"
    return fmt_time(value) if kind == "time" else fmt_bytes(value)


def _history_svg(ser: dict[str, pd.DataFrame], change: pd.Series) -> str:
    """The case over commits: instructions, ratio, and wall time with its run-to-run band."""
    from matplotlib.figure import Figure

    commits = ser["_commits"]
    panels = [m for m in history.METRICS if m.kind in ser]
    fig = Figure(figsize=(3.1 * max(len(panels), 1), 2.2))
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.2, top=0.82, wspace=0.38)
    step_pos = commits.loc[commits["commit"] == change["after_commit"], "pos"]
    for i, metric in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels), i)
        d = ser[metric.kind]
        factor = {"time": 1e6, "instructions": 1e-3}.get(metric.kind, 1.0)  # seconds -> µs, count -> k
        unit = {"time": " (µs)", "instructions": " (k)"}.get(metric.kind, "")
        y = d["value"] * factor
        ax.plot(d["pos"], y, marker="o", markersize=3, linewidth=1,
                color="#b00" if metric.kind == change["kind"] else "#36c")
        if metric.kind == "time" and len(d):
            mid = float(np.median(y))
            ax.axhspan(mid * (1 - history.WALL_TIME_NOISE), mid * (1 + history.WALL_TIME_NOISE), color="#ccc",
                       alpha=0.5, linewidth=0)
        if len(step_pos):
            ax.axvline(float(step_pos.iloc[0]) - 0.5, color="#888", linestyle="--", linewidth=0.8)
        ax.set_title(metric.label + unit, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_xlim(-0.5, max(len(commits) - 0.5, 0.5))
        ax.set_xlabel("commit (oldest first)", fontsize=6)
        ax.grid(True, alpha=0.3)
    return _svg(fig)


def _section_history(data: _Data, asv_html: str, ids: _Ids, results_dir: Path,
                     thresholds: dict[str, float], order: dict[str, int]) -> tuple[str, int]:
    """Every change over the whole history, per machine and environment; returns (html, changes found)."""
    metric_lines = "".join(
        f"<li><b>{e(m.label)}</b>{' (decides)' if m.decides else ''}: {e(m.measures)}</li>" for m in history.METRICS)
    limits = ", ".join(f"{e(m.label)} {history.threshold_for(f'bench_linear.{m.benchmark}', thresholds):.0%}"
                       for m in history.METRICS if m.decides)
    out = [f"<ul>{metric_lines}</ul>",
           "<p>A change is a step found by asv's own step detection over each case's whole history (what asv's "
           f"regressions page runs), larger than the metric's threshold in asv.conf.json ({limits}) and than "
           "the scatter on either side. Charts: the case over commits, the dashed line at the step, wall time "
           f"with a ±{history.WALL_TIME_NOISE:.0%} band (its run-to-run noise on a shared machine).</p>"]
    frame = data.frame[data.frame["status"] != "skipped"]
    changes = history.find_changes(frame, data.files, thresholds, order)
    n_found = 0
    charts = 0
    for (machine, env), fl in data.files.groupby(["machine", "env"], sort=True):
        fl = history.ordered_commits(fl, order)
        out.append(f'<h3 id="{e(ids("hist"))}">{e(machine)} — {e(env)}</h3>')
        if len(fl) < 2:
            out.append(f"<p>Only one commit (<code>{e(fl.iloc[-1]['commit'][:12])}</code>) has results here: "
                       "no history to compare yet.</p>")
            continue
        mine = changes[(changes["machine"] == machine) & (changes["env"] == env)]
        have = sorted(set(frame.loc[frame["file"].isin(fl["file"]), "kind"]) & set(history.DECIDING))
        out.append(f"<p>{len(fl)} commits, <code>{e(fl.iloc[0]['commit'][:12])}</code> "
                   f"({e(fmt_date(fl.iloc[0]['date']))}) → <code>{e(fl.iloc[-1]['commit'][:12])}</code> "
                   f"({e(fmt_date(fl.iloc[-1]['date']))}); deciding metrics recorded: "
                   f"{e(', '.join(have) or 'none (older results: wall time only)')}; "
                   f"<a href='{e(asv_html)}'>asv pages</a></p>")
        if mine.empty:
            out.append("<p class='ok'>No change in any case over the whole history.</p>")
            continue
        n_found += len(mine)
        mine = mine.assign(_up=mine["ratio"] < 1).sort_values(["_up", "after_commit", "ratio"],
                                                              ascending=[True, True, False])
        out.append(f"<p class='bad'>{len(mine)} change{'s' if len(mine) > 1 else ''}.</p>")
        out.append("<table><tr><th>metric</th><th>implementation</th><th>shape</th><th>dtype</th>"
                   "<th>device / mode</th><th>step between commits</th><th>before</th><th>after</th>"
                   "<th>after/before</th><th>functions whose instructions per call changed most</th></tr>")
        for _, r in mine.head(MAX_HISTORY_ROWS).iterrows():
            link = _asv_link(asv_html, r["benchmark"], str(machine), {"impl": r["impl"], "shape": r["shape"]})
            cls = "bad" if r["ratio"] > 1 else "ok"
            deltas = history.explain(results_dir, r)
            if deltas is None:
                why = "<i>no per-function counts kept</i>" if r["kind"] == "instructions" else ""
            else:
                why = "<br>".join(f"<code>{d.change:+,.0f}</code> {e(instructions.short_function(d.function))}"
                                  for d in deltas) or "<i>no single function moved</i>"
            out.append(
                f"<tr><td><a href='{e(link)}'>{e(r['kind'])}</a></td><th>{e(r['impl'])}</th><td>{e(r['shape'])}</td>"
                f"<td>{e(r['dtype'])}</td><td>{e(r['device'])} {e(r['mode'])}</td>"
                f"<td><code>{e(r['before_commit'][:8])}</code> → <code>{e(r['after_commit'][:8])}</code></td>"
                f"<td class='cell'>{e(_fmt_metric(r['before'], r['kind']))}</td>"
                f"<td class='cell'>{e(_fmt_metric(r['after'], r['kind']))}</td>"
                f"<td class='cell {cls}'>{r['ratio']:.3f}</td><td>{why}</td></tr>")
        out.append("</table>")
        if len(mine) > MAX_HISTORY_ROWS:
            out.append(f"<p>… and {len(mine) - MAX_HISTORY_ROWS} more.</p>")
        for _, r in mine.iterrows():
            if charts >= MAX_HISTORY_CHARTS:
                out.append(f"<p>Charts for the first {MAX_HISTORY_CHARTS} changes only.</p>")
                break
            charts += 1
            ser = history.series(frame, data.files, r.to_dict(), order)
            title = f"{r['impl']} {r['shape']} {r['dtype']} {r['device']} {r['mode']}: {r['kind']}"
            out.append(f"<h4>{e(title)}</h4><div class='plot'>{_history_svg(ser, r)}</div>")
    return "\n".join(out), n_found


def _threads(f: pd.Series) -> str:
    recorded = f.get("threads")
    if recorded is not None and recorded == recorded:
        return str(int(recorded))
    for src in (f["params"], f["env_vars"]):
        if isinstance(src, dict) and src.get(sweep.THREADS_ENV):
            return str(src[sweep.THREADS_ENV])
    marker = sweep.THREADS_ENV
    if marker in f["env"]:
        tail = f["env"].split(marker, 1)[1]
        digits = "".join(ch for ch in tail.lstrip("=-_") if ch.isdigit())
        if digits:
            return digits
    return "unknown"


def _section_env(data: _Data, latest: pd.DataFrame, impls: list[str]) -> str:
    rows = ["<table><tr><th>machine</th><th>environment</th><th>CPU</th><th>cores</th><th>OS</th><th>RAM</th>"
            "<th>python</th><th>torch</th><th>threads</th><th>latest commit</th><th>date</th><th>commits</th></tr>"]
    n_commits = data.files.groupby(["machine", "env"])["commit"].nunique()
    for _, f in latest.iterrows():
        info = {**f["params"], **data.machines.get(f["machine"], {})}
        torch_v = f["params"].get("torch") or f["requirements"].get("torch") or "unknown"
        try:
            ram = f"{int(info.get('ram', '')) / 2**30:.1f} GiB"
        except ValueError:
            ram = str(info.get("ram", ""))
        rows.append(
            f"<tr><th>{e(info.get('machine', f['machine']))}</th><td>{e(f['env'])}</td><td>{e(info.get('cpu', ''))}"
            f"</td><td>{e(info.get('num_cpu', ''))}</td><td>{e(info.get('os', ''))}</td><td>{e(ram)}</td>"
            f"<td>{e(f['python'])}</td><td>{e(torch_v)}</td><td>{e(_threads(f))}</td>"
            f"<td><code>{e(f['commit'])}</code></td><td>{e(fmt_date(f['date']))}</td>"
            f"<td>{int(n_commits.get((f['machine'], f['env']), 0))}</td></tr>")
    rows.append("</table>")
    rows.append(_section_impls(impls))
    return "\n".join(rows)


def _section_impls(impls: list[str]) -> str:
    rows = ["<h3>Implementations</h3><table><tr><th>name</th><th>expression</th><th>description</th>"
            "<th>source</th></tr>"]
    registered = set(registry.names())
    for impl in _impl_order(impls):
        if impl in registered:
            rec = registry.get(impl)
            rows.append(f"<tr><th>{e(impl)}</th><td><code>{e(rec.expression)}</code></td><td>{e(rec.description)}"
                        f"</td><td>{e(rec.source)}</td></tr>")
        else:
            rows.append(f"<tr><th>{e(impl)}</th><td></td><td><i>not registered in this process</i></td>"
                        "<td></td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


# --- pytest-benchmark runs -----------------------------------------------------------------

# extra_info keys that make a pytest-benchmark entry one of linbench's (benchmarks/quick_gate).
PB_KEYS = ("impl", "shape", "dtype", "mode")
PB_CASE = ["impl", "shape", "dtype", "device", "mode"]
PB_HINT = "write one with `pytest benchmarks/quick_gate --benchmark-save=NAME` or `--benchmark-json=FILE`"


def _pb_files(path: Path) -> list[tuple[Path, str]]:
    """The JSON files a ``--pytest-benchmark`` PATH names, each with the name it is shown under."""
    if not path.exists():
        raise ReportError(f"pytest-benchmark path {path} does not exist ({PB_HINT})")
    if not path.is_dir():
        return [(path, str(path))]
    found = sorted(p for p in path.rglob("*.json") if p.is_file())
    if not found:
        raise ReportError(f"no pytest-benchmark JSON files (*.json) under {path} ({PB_HINT})")
    return [(p, str(p.relative_to(path))) for p in found]


def _finite(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float("nan")
    return float(value)


def _iso_ms(value: object) -> float:
    """pytest-benchmark's ISO datetime as milliseconds since the epoch (what fmt_date takes)."""
    try:
        when = _dt.datetime.fromisoformat(str(value))
    except ValueError:
        return float("nan")
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.timestamp() * 1000


def _pb_flops(extra: dict, shape: str, mode: str) -> float:
    flops = _finite(extra.get("flops"))
    if math.isfinite(flops) and flops > 0:
        return flops
    try:
        return float(sweep.parse_shape(shape).flops(mode))
    except (sweep.ShapeError, KeyError):
        return float("nan")


def _load_pb_run(path: Path, name: str, run_id: int, warnings: list[str]) -> tuple[dict, list[dict]]:
    """One pytest-benchmark JSON file: its run metadata and one row per linbench benchmark."""
    try:
        data = _load_json(path)
    except (OSError, ValueError) as exc:
        raise ReportError(f"pytest-benchmark file {path} is not valid JSON ({type(exc).__name__}: {exc})") \
            from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ReportError(f"{path} is not pytest-benchmark JSON (no \"benchmarks\" list); {PB_HINT}")
    commit = data.get("commit_info") if isinstance(data.get("commit_info"), dict) else {}
    machine = data.get("machine_info") if isinstance(data.get("machine_info"), dict) else {}
    cpu = machine.get("cpu")
    if isinstance(cpu, dict):
        cpu = cpu.get("brand_raw") or cpu.get("brand") or cpu.get("arch") or ""
    rows: list[dict] = []
    foreign: list[str] = []
    for bench in data["benchmarks"]:
        bench = bench if isinstance(bench, dict) else {}
        extra = bench.get("extra_info") if isinstance(bench.get("extra_info"), dict) else {}
        stats = bench.get("stats") if isinstance(bench.get("stats"), dict) else {}
        median = _finite(stats.get("median"))
        if not all(isinstance(extra.get(k), str) and extra[k] for k in PB_KEYS) or not median > 0:
            foreign.append(str(bench.get("name", "?")))
            continue
        q1, q3 = _finite(stats.get("q1")), _finite(stats.get("q3"))
        iqr = _finite(stats.get("iqr"))
        rows.append({
            "run": run_id, "impl": extra["impl"], "shape": extra["shape"], "dtype": extra["dtype"],
            "device": str(extra.get("device") or ""), "mode": extra["mode"], "median": median,
            "iqr": iqr if math.isfinite(iqr) else q3 - q1, "rounds": _finite(stats.get("rounds")),
            "flops": _pb_flops(extra, extra["shape"], extra["mode"]),
            "torch": str(extra.get("torch", "")), "threads": str(extra.get("threads", "")),
        })
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        warnings.append(f"{name}: {len(foreign)} of {len(data['benchmarks'])} benchmarks skipped, without "
                        f"linbench's extra_info ({', '.join(PB_KEYS)}) or a median: {shown}")
    elif not rows:
        warnings.append(f"{name}: no benchmarks recorded")
    run = {
        "run": run_id, "name": name, "date": _iso_ms(data.get("datetime")),
        "commit": str(commit.get("id") or "unknown"), "dirty": commit.get("dirty") is True,
        "branch": str(commit.get("branch") or ""), "node": str(machine.get("node") or ""),
        "cpu": str(cpu or machine.get("processor") or ""),
        "torch": ", ".join(sorted({r["torch"] for r in rows if r["torch"]})) or "unknown",
        "threads": ", ".join(sorted({r["threads"] for r in rows if r["threads"]}, key=lambda t: (len(t), t)))
        or "unknown",
    }
    return run, rows


@dataclass
class _PbData:
    runs: pd.DataFrame  # one row per file, oldest first
    frame: pd.DataFrame  # one row per file and linbench benchmark


def load_pytest_benchmark(paths: Iterable[Path], warnings: list[str]) -> _PbData | None:
    """Every pytest-benchmark file ``paths`` name, or None when none is given.

    Raises ReportError for a missing path, a folder without JSON, or a file that is
    not pytest-benchmark JSON; entries without linbench's extra_info are skipped.
    """
    files: dict[Path, str] = {}
    for path in paths:
        for file, name in _pb_files(Path(path)):
            files.setdefault(file.resolve(), name)  # a file named twice (folder and file) is one run
    if not files:
        return None
    runs, rows = [], []
    for run_id, (file, name) in enumerate(files.items()):
        run, found = _load_pb_run(file, name, run_id, warnings)
        runs.append(run)
        rows.extend(found)
    run_frame = pd.DataFrame(runs).sort_values(["date", "name"], na_position="first").reset_index(drop=True)
    columns = ["run", "impl", "shape", "dtype", "device", "mode", "median", "iqr", "rounds", "flops", "torch",
               "threads"]
    frame = pd.DataFrame(rows, columns=columns)
    # A case parametrized twice in one run keeps its last measurement, as pytest-benchmark lists it.
    frame = frame.drop_duplicates(["run", *PB_CASE], keep="last").reset_index(drop=True)
    return _PbData(run_frame, frame)



def _pb_rates(frame: pd.DataFrame) -> pd.DataFrame:
    t = frame.copy()
    t["gflops"] = t["flops"] / t["median"] / 1e9
    group = ["run", "shape", "dtype", "device", "mode"]
    base = t.loc[t["impl"] == registry.baseline(), group + ["median"]].rename(columns={"median": "base"})
    t = t.merge(base, on=group, how="left")
    t["speedup"] = t["base"] / t["median"]
    t["best"] = t["median"] == t.groupby(group)["median"].transform("min")
    t["noisy"] = t["iqr"] / t["median"] > NOISY_IQR
    return t


def _pb_run_line(run: pd.Series) -> str:
    dirty = " (dirty)" if run["dirty"] else ""
    return f"<code>{e(run['commit'][:12])}</code>{dirty} ({e(fmt_date(run['date']))})"


def _section_pytest(pb: _PbData, ids: _Ids) -> tuple[str, list[tuple[str, str]]]:
    out = ["<p>Runs of <code>pytest benchmarks/quick_gate</code> (pytest-benchmark, CPU), oldest first. Times "
           "are medians per call; IQR is the interquartile range of the rounds, marked noisy ~ above "
           f"{NOISY_IQR:.0%} of the median; speedup is against <code>{e(registry.baseline())}</code> "
           "in the same run.</p>"]
    toc: list[tuple[str, str]] = []
    rates = _pb_rates(pb.frame)
    counts = rates.groupby("run").size()
    heads = {run: ids("pb") for run in pb.runs["run"]}
    rows = ["<table><tr><th>run</th><th>date</th><th>commit</th><th>branch</th><th>machine</th><th>CPU</th>"
            "<th>torch</th><th>threads</th><th>cases</th></tr>"]
    for _, run in pb.runs.iterrows():
        rows.append(f"<tr><th><a href=\"#{e(heads[run['run']])}\">{e(run['name'])}</a></th>"
                    f"<td>{e(fmt_date(run['date']))}</td><td><code>{e(run['commit'][:12])}</code>"
                    f"{' (dirty)' if run['dirty'] else ''}</td><td>{e(run['branch'])}</td><td>{e(run['node'])}</td>"
                    f"<td>{e(run['cpu'])}</td><td>{e(run['torch'])}</td><td>{e(run['threads'])}</td>"
                    f"<td class='cell'>{int(counts.get(run['run'], 0))}</td></tr>")
    rows.append("</table>")
    out.append("\n".join(rows))
    measured = pb.runs[pb.runs["run"].isin(counts.index)]
    compare_id = ids("pb-compare")
    toc.append((compare_id, "latest run against the previous one"))
    out.append(f'<h3 id="{e(compare_id)}">Latest run against the previous one</h3>')
    if len(measured) < 2:
        out.append("<p>Fewer than two runs with linbench benchmarks: nothing to compare yet.</p>")
    else:
        out.append(_pb_compare(rates, measured.iloc[-2], measured.iloc[-1]))
    for _, run in pb.runs.iloc[::-1].iterrows():
        toc.append((heads[run["run"]], run["name"]))
        out.append(f'<h3 id="{e(heads[run["run"]])}">{e(run["name"])}</h3>')
        out.append(f"<p>{_pb_run_line(run)}; machine {e(run['node'] or 'unknown')}, torch {e(run['torch'])}, "
                   f"{e(run['threads'])} threads</p>")
        sub = rates[rates["run"] == run["run"]]
        if sub.empty:
            out.append("<p>No linbench benchmark in this run.</p>")
            continue
        out.append(_pb_tables(sub))
    return "\n".join(out), toc


def _pb_tables(sub: pd.DataFrame) -> str:
    out = []
    groups = sub[["device", "dtype", "mode", "shape"]].drop_duplicates()
    keys = sorted(groups.itertuples(index=False, name=None), key=lambda g: (
        _order(groups["device"], sweep.DEVICES).index(g[0]), _order(groups["dtype"], sweep.DTYPES).index(g[1]),
        _order(groups["mode"], sweep.MODES).index(g[2]), _order(groups["shape"], sweep.ALL_SHAPES).index(g[3])))
    for device, dtype, mode, shape in keys:
        grp = sub[(sub["device"] == device) & (sub["dtype"] == dtype) & (sub["mode"] == mode)
                  & (sub["shape"] == shape)].set_index("impl")
        out.append(f"<h4>{e(shape)} · {e(dtype)} · {e(mode)} <small>({e(device or 'device unknown')})</small></h4>")
        out.append("<table class='perf'><tr><th>implementation</th><th>median</th><th>IQR</th><th>rounds</th>"
                   f"<th>GFLOP/s</th><th>speedup vs {e(registry.baseline())}</th></tr>")
        for impl in _impl_order(grp.index):
            r = grp.loc[impl]
            classes = ["cell"] + (["best"] if r["best"] else []) + (["noisy"] if r["noisy"] else [])
            rounds = str(int(r["rounds"])) if math.isfinite(r["rounds"]) else "–"
            speed = f"{r['speedup']:.2f}×" if math.isfinite(r["speedup"]) else "–"
            out.append(f"<tr><th>{e(impl)}</th><td class=\"{' '.join(classes)}\"><span class=\"t\">"
                       f"{e(fmt_time(r['median']))}</span></td><td class='cell'>{e(fmt_time(r['iqr']))}</td>"
                       f"<td class='cell'>{rounds}</td><td class='cell'>{e(fmt_gflops(r['gflops']))}</td>"
                       f"<td class='cell'>{e(speed)}</td></tr>")
        out.append("</table>")
    return "\n".join(out)


def _pb_compare(rates: pd.DataFrame, old: pd.Series, new: pd.Series) -> str:
    cols = [*PB_CASE, "median", "noisy"]
    m = rates.loc[rates["run"] == new["run"], cols].merge(rates.loc[rates["run"] == old["run"], cols],
                                                          on=PB_CASE, suffixes=("", "_old"))
    m["ratio"] = m["median"] / m["median_old"]
    m["change"] = np.where(m["ratio"] > SLOWER_RATIO, "slower", np.where(m["ratio"] < FASTER_RATIO, "faster", ""))
    n_new = int((rates["run"] == new["run"]).sum())
    n_old = int((rates["run"] == old["run"]).sum())
    out = [f"<p>{e(old['name'])} {_pb_run_line(old)} → {e(new['name'])} {_pb_run_line(new)}: {len(m)} cases in "
           f"both, new/old of the medians; <span class='bad'>slower</span> above {SLOWER_RATIO:.2f}, faster below "
           f"{FASTER_RATIO:.2f} (pytest-benchmark records no confidence interval: check noisy ~ cases with "
           "another run).</p>"]
    if n_new > len(m) or n_old > len(m):
        out.append(f"<p class='warn'>{n_new - len(m)} cases only in the latest run, {n_old - len(m)} only in the "
                   "previous one.</p>")
    if old["node"] != new["node"] or old["cpu"] != new["cpu"]:
        out.append(f"<p class='warn'>The runs come from different machines ({e(old['node'])}, {e(new['node'])}): "
                   "the ratios compare machines too.</p>")
    n_slower = int((m["change"] == "slower").sum())
    out.append(f"<p class='{'bad' if n_slower else 'ok'}'>{n_slower} of {len(m)} cases slower than "
               f"{SLOWER_RATIO:.2f}×.</p>")
    if m.empty:
        return "\n".join(out)
    m = m.sort_values(["ratio", "impl", "shape"], ascending=[False, True, True])
    out.append("<table><tr><th>change</th><th>implementation</th><th>shape</th><th>dtype</th><th>device / mode</th>"
               "<th>previous</th><th>latest</th><th>latest/previous</th></tr>")
    for r in m.itertuples(index=False):
        cls = "bad" if r.change == "slower" else "ok"
        noisy = " noisy" if r.noisy or r.noisy_old else ""
        out.append(f"<tr><td class='{cls}'>{e(r.change)}</td><th>{e(r.impl)}</th><td>{e(r.shape)}</td>"
                   f"<td>{e(r.dtype)}</td><td>{e(r.device)} {e(r.mode)}</td>"
                   f"<td class='cell'>{e(fmt_time(r.median_old))}</td><td class='cell'>{e(fmt_time(r.median))}</td>"
                   f"<td class='cell{noisy}'><span class='t'>{r.ratio:.2f}</span></td></tr>")
    out.append("</table>")
    return "\n".join(out)


# --- entry point --------------------------------------------------------------------------


def build_report(results_dir: Path, out: Path, *, gates_json: Path | None = None,
                 asv_html: str = "asv/index.html", pytest_benchmark: Iterable[Path] = (),
                 asv_conf: Path | None = None) -> ReportSummary:
    """Build the summary page ``out`` from asv results under ``results_dir``.

    ``pytest_benchmark``: pytest-benchmark JSON files, or folders searched for
    ``*.json``, shown in a section of their own.

    Raises ReportError when the results directory is missing or holds no usable
    results file and no pytest-benchmark run is given, when a pytest-benchmark path
    is missing or not pytest-benchmark JSON, or when ``gates_json`` is given but
    unusable; a corrupt results file is skipped and named in ``ReportSummary.warnings``.
    ``asv_conf``: the asv.conf.json whose ``regressions_thresholds`` decide what a
    change is in the history (asv's defaults without one).
    """
    results_dir, out = Path(results_dir), Path(out)
    pb_warnings: list[str] = []
    pb = load_pytest_benchmark(pytest_benchmark, pb_warnings)
    data = load_results(results_dir, allow_empty=pb is not None)
    warnings = data.warnings
    warnings.extend(pb_warnings)
    gates = _load_gates(Path(gates_json), warnings) if gates_json is not None else None

    latest_files = _latest_files(data.files)
    latest = data.frame[data.frame["file"].isin(latest_files["file"])]
    impls_results = set(data.frame["impl"].unique())
    impls_all = _impl_order(impls_results | set(registry.names()))
    failed = latest[latest["status"] == "failed"]
    impls_env = _impl_order(set(impls_all) | (set(pb.frame["impl"]) if pb is not None else set()))
    ids = _Ids()
    tocs: dict[str, list[tuple[str, str]]] = {}
    sections: list[tuple[str, str, str]] = []
    n_missing = 0
    n_changes = 0
    if len(data.files):
        rates = _add_rates(latest)
        missing = _missing_cases(latest, latest_files["file"], impls_all)
        memory = latest[latest["kind"] == "memory"]
        only_older = _only_in_older(data.frame, latest_files)
        perf_html, tocs["perf"] = _section_tables(rates, missing, latest_files, memory, impls_all, ids, asv_html,
                                                  only_older)
        sections.append(("perf", "Time, GFLOP/s and speedup (latest commit)", perf_html))
        if len(latest_files) >= 2:
            side_html, tocs["machines"] = _section_machines(latest, latest_files, ids)
            sections.append(("machines", "Machines and environments side by side", side_html))
        sections += [
            ("peak", "Fraction of the machine's peak", _section_peak(rates, latest_files, ids)),
            ("gates", "Gate status", _section_gates(gates, failed, impls_all, asv_html)),
        ]
        # Commits of one second (a rebase) are ordered as git orders them, where the repository is at hand.
        order = history.git_order(Path(asv_conf).resolve().parent if asv_conf else None)
        history_html, n_changes = _section_history(data, asv_html, ids, results_dir,
                                                   history.load_thresholds(asv_conf), order)
        sections.append(("history", "History: what changed, and why", history_html))
        n_missing = int(((missing["status"] == "missing") & (missing["reason"] == "")).sum())
    if pb is not None:
        pb_html, tocs["pytest"] = _section_pytest(pb, ids)
        sections.append(("pytest", "pytest-benchmark runs", pb_html))
    if len(data.files):
        sections.append(("env", "Environment", _section_env(data, latest_files, impls_env)))
    else:
        sections += [("gates", "Gate status", _section_gates(gates, failed, impls_env, asv_html)),
                     ("env", "Environment", _section_impls(impls_env))]
    sections = [(sid, f"{i}. {title}", html_) for i, (sid, title, html_) in enumerate(sections, 1)]
    summary = ReportSummary(
        out=out,
        n_results_files=len(data.files),
        n_cases=int((latest["status"] == "ok").sum()),
        n_failed=len(failed),
        n_missing=n_missing,
        n_machines=data.files["machine"].nunique(),
        n_commits=data.files["commit"].nunique(),
        n_pytest_runs=len(pb.runs) if pb is not None else 0,
        n_pytest_cases=len(pb.frame) if pb is not None else 0,
        warnings=warnings,
        n_changes=n_changes,
    )
    page = _page(summary, sections, tocs, asv_html, results_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return summary


def _page(summary: ReportSummary, sections: list[tuple[str, str, str]], tocs: dict[str, list[tuple[str, str]]],
          asv_html: str, results_dir: Path) -> str:
    nav = ["<nav><ul>"]
    for sid, title, _ in sections:
        nav.append(f'<li><a href="#{e(sid)}">{e(title)}</a>')
        if tocs.get(sid):
            nav.append("<ul>" + "".join(f'<li><a href="#{e(i)}">{e(t)}</a></li>' for i, t in tocs[sid]) + "</ul>")
        nav.append("</li>")
    nav.append(f'<li><a href="{e(asv_html)}">asv pages (full history)</a></li></ul></nav>')
    warn = ""
    if summary.warnings:
        warn = ('<div class="warn"><b>Warnings</b><ul>' + "".join(f"<li>{e(w)}</li>" for w in summary.warnings)
                + "</ul></div>")
    status = (f"<p>{summary.n_results_files} results files, {summary.n_machines} machines, {summary.n_commits} "
              f"commits; latest: {summary.n_cases} measured cases, "
              f"<span class='{'bad' if summary.n_failed else 'ok'}'>{summary.n_failed} failed</span>, "
              f"{summary.n_missing} default-sweep timed cases missing.</p>")
    if not summary.n_results_files:
        status = (f"<p>No asv results in <code>{e(results_dir)}</code> (<code>linbench run</code> writes them): "
                  "this page shows the pytest-benchmark runs.</p>")
    if summary.n_pytest_runs:
        status += f"<p>{summary.n_pytest_runs} pytest-benchmark runs, {summary.n_pytest_cases} cases in all.</p>"
    body = "\n".join(f'<h2 id="{e(sid)}">{e(title)}</h2>\n{content}' for sid, title, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        # An empty inline icon: otherwise browsers fetch /favicon.ico, a 404 in the console.
        "<link rel=\"icon\" href=\"data:,\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>linbench report</title><style>{CSS}</style></head><body>\n"
        f"<h1>linbench: the ways of computing a linear layer</h1>\n{status}\n{warn}\n{''.join(nav)}\n{body}\n"
        "</body></html>\n"
    )
