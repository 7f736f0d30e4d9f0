"""Loading: every source of measurements as rows of one tidy table.

asv results are read through ``linear_impls.results`` (asv's own ``asv.results``);
pytest-benchmark JSON through ``pandas.json_normalize``; the checks file is the output
of ``linbench check --json``.  Every loader gives the same columns (``MEASUREMENT``):
one row per source file, benchmark and case, with its value, status and whatever
statistics the source recorded, and a second table with one row per source file
(``FILE``).  Nothing here formats or decides anything.
"""

from __future__ import annotations

import ast
import datetime as _dt
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import bench, dispatch, results, suite

# The tidy table: a row per measurement.  ``kind`` is the metric (time, ratio,
# instructions, memory); ``status`` ok, failed (asv recorded an exception) or skipped.
CASE = ["impl", "shape", "dtype", "device", "mode"]
# proc_lo, proc_hi, proc_sd, proc_n: the lowest and highest of the per-process medians of a
# benchmark run in several processes whose samples were recorded (the speedups':
# the interleaved speedups), the standard deviation of their logarithms, and how many there were.
PROCESS_STATS = ["proc_lo", "proc_hi", "proc_sd", "proc_n"]
STATS = ["ci_a", "ci_b", "q25", "q75", "number", "repeat", *PROCESS_STATS]
MEASUREMENT = ["file", "source", "machine", "env", "commit", "date", "benchmark", *CASE, "kind", "value",
               "status", *STATS]
# A row per source file: an asv results file or a pytest-benchmark run.
# What a results file's Environment benchmarks recorded beyond the threads: the GPU (n/a on
# a machine without one) and the matmul precision flags the cases ran under (linear_impls.gpu).
GPU_FACTS = ["cuda_capability", "cuda_multiprocessors", "cuda_memory_gib", "cuda_runtime", "cuda_driver"]
PRECISION_FACTS = ["tf32", "reduced_precision_reduction"]
FILE = ["file", "source", "path", "machine", "env", "commit", "date", "python", "torch", "threads",
        "compile_threads", "cpu", "dirty", "branch", "params", "env_vars", *GPU_FACTS, *PRECISION_FACTS]



# The catalogue's tables (linear_impls/suite.py), derived when asked: matched on "Class.method",
# any module.
def fixed() -> dict[str, dict]:
    """The parameters each benchmark's class fixes, and its kind."""
    return {m.name: {**m.fixed, "kind": m.kind} for m in suite.METRICS}


def unit_of() -> dict[str, str]:
    """The unit each kind of measurement is written in (units.fmt): its first metric's."""
    return {m.kind: m.unit for m in reversed(suite.METRICS)}


def known_param_names() -> dict[str, list[str]]:
    """Parameter names of the suite's benchmarks, for a results folder without benchmarks.json."""
    return {m.name: list(m.params) for m in suite.METRICS}


_ASV_STATS = {"ci_99_a": "ci_a", "ci_99_b": "ci_b", "q_25": "q25", "q_75": "q75", "number": "number",
              "repeat": "repeat"}
# The suite records the thread counts it pinned as benchmarks of their own
# (Environment.track_threads, Environment.track_inductor_compile_threads).
ENVIRONMENT_BENCHMARKS = {".Environment.track_threads": "threads",
                          ".Environment.track_inductor_compile_threads": "compile_threads",
                          **{f".EnvironmentPrecision.track_{k}": k for k in PRECISION_FACTS},
                          **{f".EnvironmentGpu.track_{k}": k for k in GPU_FACTS}}
# The roofline's ceilings (bench_linear.Ceilings): a row per file, dtype, device and kind.
CEILING_KINDS = {"Ceilings.track_peak_gflops": "peak", "MemoryBandwidth.track_bandwidth_gbs": "bandwidth",
                 "CacheBandwidth.track_cache_bandwidth_gbs": "cache_bandwidth",
                 "CacheBandwidth.track_cache_bytes": "cache_bytes"}
CEILING = ["file", "machine", "env", "commit", "dtype", "device", "kind", "value"]


class ReportError(Exception):
    """Input the report cannot be built from; the message is one line for the user."""


@dataclass
class Measurements:
    """What the loaders read: the tidy table, its files, the machines, and what was skipped."""

    frame: pd.DataFrame  # columns MEASUREMENT
    files: pd.DataFrame  # columns FILE
    machines: dict[str, dict] = field(default_factory=dict)  # machine folder -> machine.json
    warnings: list[str] = field(default_factory=list)
    ceilings: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CEILING))  # GFLOP/s, GB/s
    # What each case dispatched to (linear_impls.dispatch), per results file: columns DISPATCH.
    dispatch: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DISPATCH))


def short(name: str) -> str:
    """``bench_linear.Class.method`` -> ``Class.method``."""
    return ".".join(name.split(".")[-2:])


def unrepr(value: object) -> str:
    """asv stores parameter values as repr strings: ``"'f_linear'"`` -> ``f_linear``."""
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return value
        return parsed if isinstance(parsed, str) else str(parsed)
    return str(value)


def _json(path: Path) -> object:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def empty_measurements() -> pd.DataFrame:
    text = {"file": int, "date": float, "value": float, **{s: float for s in STATS}}
    return pd.DataFrame({c: pd.Series(dtype=text.get(c, object)) for c in MEASUREMENT})


def _empty_files() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=int if c == "file" else float if c == "date" else object)
                         for c in FILE})


# --- asv ----------------------------------------------------------------------------------


def _param_names(name: str, meta: dict, n_axes: int) -> list[str] | None:
    entry = meta.get(name)
    if isinstance(entry, dict) and isinstance(entry.get("param_names"), list):
        names = [str(n) for n in entry["param_names"]]
        if len(names) == n_axes:
            return names
    names = known_param_names().get(short(name))
    return list(names) if names is not None and len(names) == n_axes else None


def _benchmark_frame(b: results.Benchmark, meta: dict) -> pd.DataFrame | str:
    """One benchmark of one results file as rows, or the reason it is unusable."""
    if b.error:
        return f"asv cannot read its values ({b.error})"
    names = _param_names(b.name, meta, len(b.params))
    known = known_param_names()
    if names is None and short(b.name) in known:
        return f"{len(b.params)} parameter axes, expected {len(known[short(b.name)])}"
    if names is None or "impl" not in names or "shape" not in names:
        return "no impl/shape parameters"
    n = len(b.values)
    frame = pd.MultiIndex.from_product([[unrepr(v) for v in axis] for axis in b.params],
                                       names=names).to_frame(index=False)
    value = _floats(b.values)
    frame["value"] = value
    failed = np.fromiter((v is None for v in b.values), dtype=bool, count=n)
    frame["status"] = np.where(failed, "failed", np.where(np.isnan(value), "skipped", "ok"))
    stats = [s if isinstance(s, dict) else {} for s in b.stats]
    for src, dst in _ASV_STATS.items():
        frame[dst] = _floats([s.get(src) for s in stats])
    given = fixed().get(short(b.name), {})
    if given.get("kind") == "speedup":
        spread = [process_spread(x, samples_per_process(x)) for x in (b.samples or [None] * n)]
    else:
        spread = [process_spread(None, 0)] * n
    for i, col in enumerate(PROCESS_STATS):
        frame[col] = _floats([s[i] for s in spread])
    for col in ("dtype", "device", "mode"):
        if col not in frame.columns:
            frame[col] = given.get(col, "")
    method = b.name.rsplit(".", 1)[-1]
    # A benchmark the catalogue does not know (an older or a forked suite's) is named for what
    # its method says, never passed off as another metric.
    frame["kind"] = given.get("kind") or ("time" if method.startswith("time_") else
                                          "memory" if method.startswith("peakmem_") else method)
    frame["benchmark"] = b.name
    return frame


def samples_per_process(samples) -> int:
    """How many of a speedup's samples each process gave: one (its median, from the speedup
    worker), or ``bench.SPEEDUP_BLOCKS`` (every block, from results that asv's rounds made,
    one process per round, before the worker)."""
    k = bench.SPEEDUP_BLOCKS
    if isinstance(samples, list) and len(samples) >= 2 * k and len(samples) % k == 0:
        return k
    return 1


def process_spread(samples, per: int) -> tuple[float | None, ...]:
    """(lowest, highest, standard deviation of the logarithms, count) of the medians of the
    processes that made ``samples``, ``per`` samples each (asv appends each round's to the
    last one's); all None for a single process."""
    if not isinstance(samples, list) or per < 1 or len(samples) < 2 * per or len(samples) % per:
        return None, None, None, None
    medians = [float(np.median(samples[i:i + per])) for i in range(0, len(samples), per)]
    if min(medians) <= 0:
        return None, None, None, None
    return min(medians), max(medians), float(np.std(np.log(medians), ddof=1)), len(medians)


def _floats(values: list) -> np.ndarray:
    """Numbers as floats; None, strings and booleans (not measurements) as NaN."""
    return np.fromiter((v if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan for v in values),
                       dtype=float, count=len(values))


def load_results(results_dir: Path, *, allow_empty: bool = False) -> Measurements:
    """Every usable asv results file under ``results_dir``.

    With ``allow_empty`` (other input is given), a missing folder or one without
    usable results gives no rows instead of ReportError.
    """
    results_dir = Path(results_dir)
    if not results_dir.exists() and not allow_empty:
        raise ReportError(f"results directory {results_dir} does not exist (run `asv run` first)")
    if results_dir.exists() and not results_dir.is_dir():
        raise ReportError(f"results path {results_dir} is not a directory")
    warnings: list[str] = []
    meta = _benchmarks_json(results_dir, warnings)
    paths = results.result_paths(results_dir) if results_dir.is_dir() else []
    machines = {mdir.name: _machine_json(mdir, warnings) for mdir in sorted({p.parent for p in paths})}
    frames: list[pd.DataFrame] = []
    files: list[dict] = []
    ceilings: list[dict] = []
    ignored: set[str] = set()
    for path in paths:
        rel = f"{path.parent.name}/{path.name}"
        try:
            res = results.read(path)
        except results.UnreadableResults as exc:
            warnings.append(f"{rel}: skipped, not an asv results file ({exc})")
            continue
        file_id = len(files)
        params = res.params if isinstance(res.params, dict) else {}
        row = {"file": file_id, "source": "asv", "path": rel, "machine": path.parent.name, "env": str(res.env_name),
               "commit": str(res.commit_hash), "date": _float(res.date), "python": str(res._python or ""),
               "torch": str(params.get("torch") or (res._requirements or {}).get("torch") or "unknown"),
               "threads": "", "compile_threads": "", "cpu": str(params.get("cpu", "")), "dirty": False, "branch": "",
               "params": params, "env_vars": res.env_vars if isinstance(res.env_vars, dict) else {},
               **{k: "" for k in (*GPU_FACTS, *PRECISION_FACTS)}}
        files.append(row)
        for b in results.iter_benchmarks(res):
            if short(b.name) in CEILING_KINDS and not b.error and len(b.params) in (1, 2):
                # The peak is per (dtype, device), the bandwidth per device (its dtype: "").
                axes = b.params if len(b.params) == 2 else [["''"], *b.params]
                for (dtype, device), value in zip(itertools.product(*axes), b.values, strict=True):
                    if isinstance(value, (int, float)) and value == value and value > 0:
                        ceilings.append({"file": file_id, "machine": row["machine"], "env": row["env"],
                                         "commit": row["commit"], "dtype": unrepr(dtype), "device": unrepr(device),
                                         "kind": CEILING_KINDS[short(b.name)], "value": float(value)})
                continue
            column = next((c for suffix, c in ENVIRONMENT_BENCHMARKS.items() if b.name.endswith(suffix)), None)
            if column is not None:
                value = b.values[0] if b.values else None
                if isinstance(value, (int, float)) and value == value:
                    row[column] = str(int(value)) if float(value).is_integer() else f"{value:g}"
                continue
            frame = _benchmark_frame(b, meta)
            if isinstance(frame, str):
                if frame == "no impl/shape parameters":
                    ignored.add(b.name)
                else:
                    warnings.append(f"{rel}: benchmark {b.name} skipped ({frame})")
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
    file_frame = pd.DataFrame(files, columns=FILE) if files else _empty_files()
    frame = _with_files(pd.concat(frames, ignore_index=True) if frames else None, file_frame)
    return Measurements(frame, file_frame, machines, warnings, pd.DataFrame(ceilings, columns=CEILING),
                        _dispatch_frame(results_dir, file_frame))


DISPATCH = ["file", "impl", "shape", "dtype", "device", "mode", "ops", "sequence", "backward", "intermediate_bytes",
            "copies", "kernels"]


def _dispatch_frame(results_dir: Path, files: pd.DataFrame) -> pd.DataFrame:
    """The op traces kept beside the results, each joined to its results file: by machine,
    commit and environment, or (plain asv's shared folder) by commit and environment."""
    rows = dispatch.load_all(results_dir) if results_dir.is_dir() else []
    if not rows or files.empty:
        return pd.DataFrame(columns=DISPATCH)
    traces = pd.DataFrame(rows)
    traces["commit8"] = traces["commit"].str[:8]
    keyed = files[["file", "machine", "env", "commit"]].assign(commit8=files["commit"].str[:8])
    keyed = keyed.drop(columns="commit")
    own = traces[traces["machine"] != ""].merge(keyed, on=["machine", "env", "commit8"])
    shared = traces[traces["machine"] == ""].drop(columns="machine").merge(keyed, on=["env", "commit8"])
    # A trace whose environment has no results file of that name (asv names an `existing`
    # environment to its benchmarks differently): the commit's only file on that machine.
    only = keyed[keyed.groupby(["machine", "commit8"])["file"].transform("size") == 1]
    named = set(zip(keyed["machine"], keyed["env"], keyed["commit8"], strict=True))
    loose = traces[[(m, e, c) not in named for m, e, c in zip(traces["machine"], traces["env"], traces["commit8"],
                                                               strict=True)]]
    guessed = loose[loose["machine"] != ""].drop(columns="env").merge(only, on=["machine", "commit8"])
    out = pd.concat([own, shared, guessed], ignore_index=True).drop_duplicates(["file", *CASE], keep="first")
    out["sequence"] = [dispatch.short_sequence(o, "forward") for o in out["ops"]]
    out["backward"] = [dispatch.short_sequence(o, "backward") for o in out["ops"]]
    kernels = out["kernels"] if "kernels" in out else [None] * len(out)
    out["kernels"] = [dispatch.kernel_text(o, k) for o, k in zip(out["ops"], kernels, strict=True)]
    return out[DISPATCH].reset_index(drop=True)


def _with_files(frame: pd.DataFrame | None, files: pd.DataFrame) -> pd.DataFrame:
    if frame is None or frame.empty:
        return empty_measurements()
    frame = frame.merge(files[["file", "source", "machine", "env", "commit", "date"]], on="file", how="left")
    return frame[MEASUREMENT]


def _float(value: object) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _json_object(path: Path, label: str, warnings: list[str], ignored: str) -> dict:
    """A JSON object file beside the results; {} with a warning naming ``label`` when it is unusable."""
    if not path.is_file():
        return {}
    try:
        data = _json(path)
    except (OSError, ValueError) as exc:
        warnings.append(f"{label}: unreadable ({type(exc).__name__}: {exc}); {ignored}")
        return {}
    if not isinstance(data, dict):
        warnings.append(f"{label}: not a JSON object; {ignored}")
        return {}
    return data


def _benchmarks_json(results_dir: Path, warnings: list[str]) -> dict:
    return _json_object(results_dir / "benchmarks.json", "benchmarks.json", warnings,
                        "using built-in parameter names")


def _machine_json(mdir: Path, warnings: list[str]) -> dict:
    return _json_object(mdir / "machine.json", f"{mdir.name}/machine.json", warnings, "ignored")


# --- the checks file ----------------------------------------------------------------------

CHECK_COLUMNS = ["impl", "check", "case", "dtype", "device", "status", "reason"]


def load_checks(path: Path, warnings: list[str]) -> pd.DataFrame:
    """``linbench check --json`` output: a row per implementation, check, case, dtype and device."""
    try:
        data = _json(path)
    except FileNotFoundError:
        raise ReportError(f"checks file {path} does not exist (write it with `linbench check --json > FILE`)") \
            from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"checks file {path} is not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, list):
        raise ReportError(f"checks file {path} is not a JSON array (the output of `linbench check --json`)")
    good = [r for r in data if isinstance(r, dict) and "impl" in r and r.get("status") in ("pass", "fail", "skip")]
    if len(good) < len(data):
        warnings.append(f"{path.name}: {len(data) - len(good)} check rows without impl or a pass/fail/skip status "
                        "skipped")
    frame = pd.DataFrame(good, columns=[*CHECK_COLUMNS, "shape", "torch_error_ratio", "torch_error_ratio_max"])
    for k in CHECK_COLUMNS:
        frame[k] = frame[k].fillna("").astype(str)
    for k in ("torch_error_ratio", "torch_error_ratio_max"):  # absent from older checks files
        frame[k] = pd.to_numeric(frame[k], errors="coerce")
    return frame


# --- pytest-benchmark ---------------------------------------------------------------------

# extra_info keys that make a pytest-benchmark entry one of linbench's (benchmarks/quick_gate).
PB_KEYS = ("impl", "shape", "dtype", "mode")
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


def _iso_ms(value: object) -> float:
    """pytest-benchmark's ISO datetime as milliseconds since the epoch, asv's unit."""
    try:
        when = _dt.datetime.fromisoformat(str(value))
    except ValueError:
        return float("nan")
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.timestamp() * 1000


def _column(frame: pd.DataFrame, name: str, numeric: bool = False) -> pd.Series:
    if name not in frame.columns:
        return pd.Series(np.nan if numeric else "", index=frame.index)
    col = frame[name]
    if numeric:
        # A bool is not a measurement, though JSON lets one stand where a number should.
        return pd.to_numeric(col.where(~col.map(lambda v: isinstance(v, bool))), errors="coerce")
    # A number where text is expected (threads: 2) is kept as text; a missing key (NaN) is "".
    return col.map(lambda v: v if isinstance(v, str) else str(v) if isinstance(v, int) and not isinstance(v, bool)
                   else "")


def _pb_run(path: Path, name: str, file_id: int, warnings: list[str]) -> tuple[dict, pd.DataFrame]:
    """One pytest-benchmark JSON file: its run (a FILE row) and its linbench benchmarks (MEASUREMENT rows)."""
    try:
        data = _json(path)
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
    benches = [b if isinstance(b, dict) else {} for b in data["benchmarks"]]
    flat = pd.json_normalize(benches) if benches else pd.DataFrame(index=[])
    extra = {k: _column(flat, f"extra_info.{k}") for k in (*PB_KEYS, "device", "torch", "threads")}
    median = _column(flat, "stats.median", numeric=True)
    ours = (pd.concat([extra[k] != "" for k in PB_KEYS], axis=1).all(axis=1) & (median > 0) if len(flat)
            else pd.Series(False, index=flat.index, dtype=bool))
    foreign = flat.loc[~ours, "name"].astype(str).tolist() if "name" in flat.columns else ["?"] * int((~ours).sum())
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        warnings.append(f"{name}: {len(foreign)} of {len(benches)} benchmarks skipped, without "
                        f"linbench's extra_info ({', '.join(PB_KEYS)}) or a median: {shown}")
    elif not len(flat):
        warnings.append(f"{name}: no benchmarks recorded")
    q1, q3 = _column(flat, "stats.q1", numeric=True), _column(flat, "stats.q3", numeric=True)
    rows = pd.DataFrame({
        "file": file_id, "benchmark": "quick_gate", **{k: extra[k] for k in ("impl", "shape", "dtype", "mode")},
        "device": extra["device"], "kind": "time", "value": median, "status": "ok",
        "ci_a": np.nan, "ci_b": np.nan, "q25": q1, "q75": q3, "number": np.nan,
        "repeat": _column(flat, "stats.rounds", numeric=True),
        **{c: np.nan for c in PROCESS_STATS},
        "iqr": _column(flat, "stats.iqr", numeric=True), "torch": extra["torch"], "threads": extra["threads"]},
        index=flat.index)[ours]
    run = {
        "file": file_id, "source": "pytest-benchmark", "path": name, "machine": str(machine.get("node") or ""),
        "env": "", "commit": str(commit.get("id") or "unknown"), "date": _iso_ms(data.get("datetime")),
        "python": str(machine.get("python_version") or ""),
        "torch": ", ".join(sorted(set(rows["torch"]) - {""})) or "unknown",
        "threads": ", ".join(sorted(set(rows["threads"]) - {""}, key=lambda t: (len(t), t))) or "unknown",
        "compile_threads": "",
        "cpu": str(cpu or machine.get("processor") or ""), "dirty": commit.get("dirty") is True,
        "branch": str(commit.get("branch") or ""), "params": {}, "env_vars": {},
    }
    return run, rows


def load_pytest_benchmark(paths: Iterable[Path], warnings: list[str]) -> Measurements | None:
    """Every pytest-benchmark file ``paths`` name (files, or folders searched for ``*.json``); None if none given.

    Raises ReportError for a missing path, a folder without JSON, or a file that is
    not pytest-benchmark JSON; entries without linbench's extra_info are skipped.
    A case parametrized twice in one run keeps its last measurement, as pytest-benchmark lists it.
    """
    files: dict[Path, str] = {}
    for path in paths:
        for file, name in _pb_files(Path(path)):
            files.setdefault(file.resolve(), name)  # a file named twice (folder and file) is one run
    if not files:
        return None
    runs, frames = [], []
    for file_id, (file, name) in enumerate(files.items()):
        run, rows = _pb_run(file, name, file_id, warnings)
        runs.append(run)
        frames.append(rows)
    run_frame = pd.DataFrame(runs, columns=FILE)
    rows = pd.concat(frames, ignore_index=True)
    # Only the IQR recorded, not the quartiles: keep its width, which is what the page shows.
    no_quartiles = rows["q25"].isna() | rows["q75"].isna()
    rows.loc[no_quartiles, "q25"] = rows.loc[no_quartiles, "value"]
    rows.loc[no_quartiles, "q75"] = rows.loc[no_quartiles, "value"] + rows.loc[no_quartiles, "iqr"]
    rows = rows.drop_duplicates(["file", *CASE], keep="last")
    frame = _with_files(rows.drop(columns=["iqr", "torch", "threads"]), run_frame)
    return Measurements(frame.reset_index(drop=True), run_frame, {}, warnings)


def load_models(results_dir: Path, extra: Iterable[Path], warnings: list[str]) -> list:
    """The sweep files of models: those ``linbench run --sweep FILE`` kept beside the results
    (``<results>/linbench-sweeps/``), then ``extra`` (``linbench report --sweep FILE``), one per
    name (the later wins).  A kept file that cannot be read is a warning; an explicit one that
    cannot be read is a ReportError."""
    from .. import asvrun, sweepfile

    found: dict[str, object] = {}
    kept = Path(results_dir) / asvrun.SWEEP_FILES
    for path in sorted(kept.glob("*.toml")) if kept.is_dir() else []:
        try:
            sf = sweepfile.load(path)
        except sweepfile.SweepFileError as exc:
            warnings.append(f"{exc} (skipped)")
            continue
        found[sf.name] = sf
    for path in extra:
        try:
            sf = sweepfile.load(path)
        except sweepfile.SweepFileError as exc:
            raise ReportError(str(exc)) from None
        found[sf.name] = sf
    return list(found.values())
