"""Analysis: pure pandas on the tidy table (``load.MEASUREMENT``), nothing formatted.

Every table the page shows is computed here, so the golden tests can assert them
exactly and the templates only lay them out.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .. import compiled, dropin, history, registry, sweep
from ..verdict import classify
from .load import CASE, fixed

# (q75 - q25) / median above this marks a measurement as noisy.
NOISY_IQR = 0.2
# Two pytest-benchmark runs: new/old beyond this either way is a change (no CI is recorded).
RUN_FACTOR = 1.10
BENCH_CASE = ["benchmark", *CASE]
# One timed case of one file, across implementations: what a speedup compares within.
RATE_GROUP = ["file", "benchmark", "shape", "dtype", "device", "mode"]
# A speedup is "faster" or "slower" beyond this factor either way, and only when its interval
# (the spread between processes, widened by the case's null control) excludes 1: two ways
# that run the same kernel must read "same".
SPEEDUP_FACTOR = 1.05


def order(values: Iterable[str], preferred: Iterable[str]) -> list[str]:
    """``values`` in the ``preferred`` order, any others sorted after."""
    values = set(values)
    pref = [v for v in preferred if v in values]
    return pref + sorted(values - set(pref))


def impl_order(values: Iterable[str]) -> list[str]:
    """The registry's baseline first, the rest sorted."""
    values = set(values)
    base = registry.baseline()
    return ([base] if base in values else []) + sorted(values - {base})


def shape_info(shapes: Iterable[str]) -> dict[str, sweep.Shape | None]:
    info: dict[str, sweep.Shape | None] = {}
    for s in shapes:
        try:
            info[s] = sweep.parse_shape(s)
        except sweep.ShapeError:
            info[s] = None
    return info


def itemsize(dtype: str) -> int | None:
    try:
        return sweep.dtype_of(dtype).itemsize
    except ValueError:
        return None


def latest_files(files: pd.DataFrame) -> pd.DataFrame:
    """The newest file (by commit date) of each machine and environment."""
    ordered = files.sort_values(["machine", "env", "date", "commit"], na_position="first")
    return ordered.groupby(["machine", "env"], sort=True).tail(1)


def rates(frame: pd.DataFrame) -> pd.DataFrame:
    """Timed rows with GFLOP/s, speedup against the registry's baseline, best-per-shape and noise flags.

    The one rate calculation, for asv results and pytest-benchmark runs alike.
    """
    t = frame[frame["kind"] == "time"].copy()
    shapes = shape_info(t["shape"].unique())
    flops_of = {(s, m): (sh.flops(m) if sh is not None and m in sweep.MODE_FLOP_FACTOR else np.nan)
                for s, sh in shapes.items() for m in set(t["mode"])}
    t["flops"] = [flops_of.get(k, np.nan) for k in zip(t["shape"], t["mode"], strict=True)]
    ok = t["status"] == "ok"
    t["gflops"] = np.where(ok, t["flops"] / t["value"] / 1e9, np.nan)
    base = t.loc[ok & (t["impl"] == registry.baseline()), [*RATE_GROUP, "value"]].rename(columns={"value": "base"})
    t = t.merge(base, on=RATE_GROUP, how="left")
    t["speedup"] = t["base"] / t["value"]
    t = _interleaved_speedups(t, frame)
    # The fastest by the speedup where it was measured interleaved, else by wall time.
    key = np.where(np.isfinite(t["speedup"].astype(float)), -t["speedup"].astype(float), t["value"])
    t["best"] = ok.to_numpy() & (key == pd.Series(key, index=t.index).groupby([t[c] for c in RATE_GROUP])
                                 .transform("min").to_numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        t["iqr_rel"] = (t["q75"] - t["q25"]) / t["value"]
    t["noisy"] = t["iqr_rel"] > NOISY_IQR
    return t


def _interleaved_speedups(t: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """The speedup of each timed row from the interleaved speedups (the catalogue's kind
    ``speedup``) where one was recorded: the baseline and the implementation in alternating
    blocks in one process, in several processes.

    ``low``/``high``: the speedup ± two standard errors of its processes' mean, the spread
    between processes pooled over every implementation of the case (a few processes give
    each one a degree of freedom or two; the case's ten implementations pool them), and
    widened by the case's null control's miss of 1 (the baseline against a second
    instance of itself: ``null_low``/``null_high`` its processes).  With one process (plain asv), asv's 99%
    interval.  ``speedup_verdict`` faster, slower or same by :func:`verdict.classify`.
    Elsewhere the speedup stays the wall-time quotient, ``speedup_source`` "wall time"
    and no verdict."""
    key = ["file", "impl", "shape", "dtype", "device", "mode"]
    sp = frame[(frame["kind"] == "speedup") & (frame["status"] == "ok")]
    sp = sp.assign(_sp=sp["value"], _var=sp["proc_sd"].astype(float) ** 2)
    sp["_pooled"] = np.sqrt(sp.groupby(key[:1] + key[2:])["_var"].transform("mean"))
    with np.errstate(invalid="ignore", divide="ignore"):
        half = 2 * sp["_pooled"] / np.sqrt(sp["proc_n"].astype(float))
        sp["_lo"] = np.where(half.notna(), sp["_sp"] * np.exp(-half), sp["ci_a"])
        sp["_hi"] = np.where(half.notna(), sp["_sp"] * np.exp(half), sp["ci_b"])
    null = sp.loc[sp["impl"] == registry.baseline(), [*key, "_sp", "proc_lo", "proc_hi"]].drop(columns="impl")
    null = null.rename(columns={"_sp": "_null", "proc_lo": "null_low", "proc_hi": "null_high"})
    t = t.merge(sp[[*key, "_sp", "_lo", "_hi"]], on=key, how="left").merge(null, on=key[:1] + key[2:], how="left")
    with np.errstate(invalid="ignore", divide="ignore"):
        # The null control's miss of 1, in log terms: a bias between two instances of one way.
        floor = np.nan_to_num(np.abs(np.log(t["_null"].astype(float).to_numpy())))
    has = t["_sp"].notna().to_numpy()
    t["speedup"] = np.where(has, t["_sp"], t["speedup"])
    t["low"] = np.where(has, t["_lo"] * np.exp(-floor), np.nan)
    t["high"] = np.where(has, t["_hi"] * np.exp(floor), np.nan)
    t["speedup_source"] = np.where(has, "interleaved", "wall time")
    t["speedup_verdict"] = [
        (classify(1.0, 1 / s, SPEEDUP_FACTOR, significant=not (lo_ <= 1 <= hi_)) if h and s > 0 else "")
        for h, s, lo_, hi_ in zip(has, t["speedup"], t["low"], t["high"], strict=True)]
    return t.drop(columns=["_sp", "_lo", "_hi", "_null"])


def expected_skip(impl: str, shape: sweep.Shape | None, dtype: str, device: str, mode: str,
                  sweep_def: sweep.Sweep | None = None) -> str | None:
    """Why a sweep (default: the default sweep) skips a case by design (``sweep.design_reason``:
    limits, budget); None if it should run.  An implementation this process does not know (a
    plugin not loaded here) has no declared limits: only the budget applies to it.

    Memory-based skips depend on the machine that ran and cannot be reproduced here.
    """
    if shape is None:
        return "malformed shape"
    if impl in registry.names():
        record = registry.get(impl)
    else:
        variant = compiled.base_of(impl)
        known = variant is not None and variant[0] in registry.names()
        record = registry.get(compiled.register_compiled(*variant)) if known else registry.Impl(impl, None, "", "")
    return sweep.design_reason(record, shape, dtype, device, mode, sweep_def or sweep.SWEEPS["default"])


def missing_cases(latest: pd.DataFrame, file_ids: Iterable[int], impls: list[str],
                  sweeps_of: dict[int, list[tuple[sweep.Sweep, list[str]]]] | None = None) -> pd.DataFrame:
    """Timed cases not measured in the latest file of each machine/env: of the sweeps
    ``linbench run`` recorded for it (``sweeps_of``: per file, each sweep with the dtypes it was
    asked for), else of the default sweep (plain asv records none), in the dtypes it timed
    anything in.

    Columns: file, benchmark, impl, shape, dtype, device, mode, status (failed or
    missing), reason (why it is skipped by design, or empty), sweep.
    """
    default = sweep.SWEEPS["default"]
    sweeps_of = sweeps_of or {}
    timed = latest[latest["kind"] == "time"]
    bench_names = {mode: name for name, mode in timed[["benchmark", "mode"]].drop_duplicates().itertuples(index=False)}
    for name, fixed_params in fixed().items():
        if fixed_params["kind"] == "time" and fixed_params["mode"] not in bench_names:
            bench_names[fixed_params["mode"]] = f"bench_linear.{name}"
    rows = []
    present = timed[timed["status"] != "skipped"]
    by_name: dict[str, sweep.Sweep] = {}
    for file_id in file_ids:
        mine = present[present["file"] == file_id]
        devices = ["cpu"] + sorted(set(mine["device"]) - {"cpu"})
        ran = set(mine["dtype"])
        for sw, asked in sweeps_of.get(file_id) or [(default, list(default.dtypes))]:
            by_name[sw.name] = sw
            # The dtypes the run timed anything in: one that asked for float32 alone (make bench's
            # default) is judged on float32, not on the dtypes it was never asked to run.
            dtypes = [d for d in sw.dtypes if d in ran and d in asked] or [d for d in sw.dtypes if d in asked]
            idx = pd.MultiIndex.from_product([[file_id], impls, list(sw.shapes), dtypes, devices, list(sw.modes)],
                                             names=["file", *CASE]).to_frame(index=False)
            if sw.cases:  # a sweep file: its exact cases
                idx = idx[[k in sw.cases for k in zip(idx["shape"], idx["dtype"], idx["device"], strict=True)]]
            rows.append(idx.assign(sweep=sw.name))
    columns = ["file", *BENCH_CASE, "status", "reason", "sweep"]
    if not rows:
        return pd.DataFrame(columns=columns)
    expected = pd.concat(rows, ignore_index=True).drop_duplicates(["file", *CASE], keep="first")
    expected["benchmark"] = expected["mode"].map(bench_names)
    measured = timed.loc[timed["status"] == "ok", ["file", *BENCH_CASE]].assign(_m=True)
    merged = expected.merge(measured, on=["file", *BENCH_CASE], how="left")
    missing = merged[merged["_m"].isna()].drop(columns="_m")
    failed = timed.loc[timed["status"] == "failed", ["file", *BENCH_CASE]].assign(status="failed")
    missing = missing.merge(failed, on=["file", *BENCH_CASE], how="left")
    missing["status"] = missing["status"].fillna("missing")
    shapes = shape_info(set(missing["shape"]))
    keys = missing[[*CASE, "sweep"]].drop_duplicates()
    reasons = {k: expected_skip(k[0], shapes[k[1]], *k[2:5], by_name[k[5]])
               for k in keys.itertuples(index=False, name=None)}
    missing["reason"] = [reasons[k] or "" for k in missing[[*CASE, "sweep"]].itertuples(index=False, name=None)]
    return missing[columns].reset_index(drop=True)


def missing_summary(unexplained: pd.DataFrame) -> pd.DataFrame:
    """Unexplained missing cases grouped: a row per device, dtype, mode and set of shapes, with the impls."""
    if unexplained.empty:
        return pd.DataFrame(columns=["device", "dtype", "mode", "shape", "impl"])
    grouped = (unexplained.groupby(["device", "dtype", "mode", "impl"], sort=True)["shape"]
               .agg(lambda s: ", ".join(order(s, sweep.ALL_SHAPES))).reset_index())
    return grouped.groupby(["device", "dtype", "mode", "shape"], sort=True)["impl"] \
        .agg(lambda s: ", ".join(impl_order(s))).reset_index()


def only_in_older(frame: pd.DataFrame, latest: pd.DataFrame) -> dict[int, int]:
    """Per latest file: cases measured by an older commit of its machine/env and not run by it.

    A case the latest commit ran and that failed there is not counted: it shows as failed.
    """
    keys = ["machine", "env", *BENCH_CASE]
    older = frame.loc[~frame["file"].isin(latest["file"]) & (frame["status"] == "ok"), keys].drop_duplicates()
    newest = frame.loc[frame["file"].isin(latest["file"]) & (frame["status"] != "skipped"), [*keys, "file"]]
    if older.empty:
        return {}
    m = older.merge(newest, on=keys, how="left", indicator=True)
    gone = m[m["_merge"] == "left_only"].merge(latest[["machine", "env", "file"]], on=["machine", "env"],
                                               suffixes=("_x", ""))
    return {int(k): int(v) for k, v in gone.groupby("file").size().items()}


def _rank(values: tuple, value: str) -> int:
    return values.index(value) if value in values else len(values)


def side_kinds() -> tuple[tuple[str, str], ...]:
    """What the side-by-side tables show per machine, (kind, label) in the order shown in a cell:
    the metrics the history draws."""
    return tuple((m.kind, m.label) for m in history.metrics())


def side_by_side(latest: pd.DataFrame) -> pd.DataFrame:
    """Cases measured by two or more of the latest files: a row per case and file, a column per kind.

    Columns: device, dtype, mode, shape, impl, file, failed, and one per ``side_kinds()`` kind.
    """
    kinds = [k for k, _ in side_kinds()]
    shown = latest[latest["kind"].isin(kinds) & (latest["status"] != "skipped")]
    keys = ["device", "dtype", "mode", "shape", "impl"]
    n_files = shown.groupby(keys)["file"].transform("nunique")
    shown = shown[n_files >= 2]
    columns = [*keys, "file", "failed", *kinds]
    if shown.empty:
        return pd.DataFrame(columns=columns)
    ok = shown[shown["status"] == "ok"].pivot_table(index=[*keys, "file"], columns="kind", values="value",
                                                      aggfunc="first")
    failed = shown.groupby([*keys, "file"])["status"].agg(lambda s: bool((s == "failed").all()))
    table = pd.DataFrame({"failed": failed}).join(ok).reset_index()
    for k in kinds:
        if k not in table.columns:
            table[k] = np.nan
    shapes = {s: i for i, s in enumerate(order(table["shape"], sweep.ALL_SHAPES))}
    impls = {s: i for i, s in enumerate(impl_order(table["impl"]))}
    table["_o"] = [(_rank(sweep.DEVICES, d), _rank(sweep.DTYPES, t), _rank(sweep.MODES, m), d, t, m, shapes[s],
                    impls[i]) for d, t, m, s, i in table[keys].itertuples(index=False, name=None)]
    return table.sort_values(["_o", "file"]).drop(columns="_o")[columns].reset_index(drop=True)


def _geomean(values: pd.Series) -> float:
    return float(np.exp(np.log(values).mean())) if len(values) else np.nan


def verdicts(rated: pd.DataFrame) -> pd.DataFrame:
    """Per file, device, dtype and mode: what a user asks first.

    Columns: file, device, dtype, mode, n_shapes (shapes the baseline was measured on),
    ranking (a list of (impl, geometric-mean speedup over the baseline, k shapes where
    both were measured), fastest first), fastest (a list of (impl, shapes where it was
    fastest)), failed (implementations with a failed case in the group).
    A failed case is one whose check failed in asv (or that crashed): it never counts.
    """
    rows = []
    base = registry.baseline()
    for (file_id, device, dtype, mode), grp in rated.groupby(["file", "device", "dtype", "mode"], sort=False):
        if (grp["status"] == "skipped").all():
            continue  # nothing of this group was run on this machine: no row to show
        ok = grp[(grp["status"] == "ok") & np.isfinite(grp["speedup"].astype(float))]
        n_shapes = int(grp.loc[(grp["impl"] == base) & (grp["status"] == "ok"), "shape"].nunique())
        ranking = [(impl, _geomean(g["speedup"]), int(g["shape"].nunique())) for impl, g in ok.groupby("impl")]
        ranking.sort(key=lambda r: (-r[1], r[0]))
        fastest = grp[grp["best"]].groupby("impl")["shape"].nunique().sort_values(ascending=False)
        rows.append({"file": int(file_id), "device": device, "dtype": dtype, "mode": mode, "n_shapes": n_shapes,
                     "ranking": ranking,
                     "fastest": sorted(fastest.items(), key=lambda kv: (-kv[1], kv[0])),
                     "failed": impl_order(set(grp.loc[grp["status"] == "failed", "impl"])),
                     # Whether every speedup behind the row was timed interleaved with the baseline.
                     "interleaved": bool(len(ok)) and "speedup_source" in ok.columns
                     and bool((ok["speedup_source"] == "interleaved").all())})
    table = pd.DataFrame(rows, columns=["file", "device", "dtype", "mode", "n_shapes", "ranking", "fastest",
                                        "failed", "interleaved"])
    if table.empty:
        return table
    table["_o"] = [(_rank(sweep.DEVICES, d), _rank(sweep.DTYPES, t), _rank(sweep.MODES, m))
                   for d, t, m in table[["device", "dtype", "mode"]].itertuples(index=False, name=None)]
    return table.sort_values(["file", "_o"]).drop(columns="_o").reset_index(drop=True)


def since_previous(frame: pd.DataFrame, files: pd.DataFrame, changes: pd.DataFrame,
                   order: dict[str, int] | None = None) -> pd.DataFrame:
    """Per machine and environment: what changed at its latest commit, from the history's changes.

    Columns: machine, env, previous, latest (commits), slower, faster, unchanged (cases
    measured in a deciding metric at both commits whose step, if any, is not at the latest).
    """
    out = []
    for (machine, env), fl in files.groupby(["machine", "env"], sort=True):
        fl = history.ordered_commits(fl, order)
        if len(fl) < 2:
            continue
        prev, last = fl.iloc[-2], fl.iloc[-1]
        both = frame[frame["file"].isin([prev["file"], last["file"]]) & frame["kind"].isin(history.deciding())
                     & (frame["status"] == "ok")]
        n_cases = int((both.groupby(["kind", *BENCH_CASE])["file"].nunique() == 2).sum())
        mine = changes[(changes["machine"] == machine) & (changes["env"] == env)
                       & (changes["after_commit"] == last["commit"])]
        slower, faster = int((mine["ratio"] > 1).sum()), int((mine["ratio"] < 1).sum())
        out.append({"machine": machine, "env": env, "previous": prev["commit"], "latest": last["commit"],
                    "slower": slower, "faster": faster, "unchanged": max(n_cases - slower - faster, 0)})
    return pd.DataFrame(out, columns=["machine", "env", "previous", "latest", "slower", "faster", "unchanged"])


def within_noise(rated: pd.DataFrame) -> pd.Series:
    """Whether each timed case's speedup is "same": by its interleaved verdict where one was
    measured, else where its wall-time interval overlaps its baseline's (asv's 99%
    confidence interval where recorded, else the interquartile range).  Never for the
    baseline's own cases: they are what the others are compared with."""
    lo = rated["ci_a"].where(rated["ci_a"].notna() & rated["ci_b"].notna(), rated["q25"])
    hi = rated["ci_b"].where(rated["ci_a"].notna() & rated["ci_b"].notna(), rated["q75"])
    is_base = (rated["impl"] == registry.baseline()).to_numpy()
    base = rated.assign(_lo=lo, _hi=hi).loc[is_base, [*RATE_GROUP, "_lo", "_hi"]]
    m = rated[RATE_GROUP].merge(base, on=RATE_GROUP, how="left")
    overlap = (lo.to_numpy() <= m["_hi"].to_numpy()) & (m["_lo"].to_numpy() <= hi.to_numpy())
    if "speedup_verdict" in rated.columns:
        measured = (rated["speedup_verdict"] != "").to_numpy()
        overlap = np.where(measured, (rated["speedup_verdict"] == "same").to_numpy(), overlap)
    return pd.Series(overlap & ~is_base, index=rated.index)


def output_checks(checks: pd.DataFrame) -> pd.DataFrame:
    """The checks of outputs and gradients: every row but the drop-in checks."""
    return checks[~checks["check"].str.startswith(dropin.PREFIX)]


def check_counts(checks: pd.DataFrame | None, failed: pd.DataFrame, impls: Iterable[str]) -> pd.DataFrame:
    """A row per implementation: output checks passed, failed, skipped, cases failed in asv, whether
    it is bad, and for a module implementation whether it is a drop-in replacement for nn.Linear
    (the drop-in checks never make it bad)."""
    impls = set(failed["impl"]) | set(impls) | (set(checks["impl"]) if checks is not None else set())
    outputs = output_checks(checks) if checks is not None else None
    counts = (outputs.pivot_table(index="impl", columns="status", values="check", aggfunc="count", fill_value=0)
              if outputs is not None and len(outputs) else pd.DataFrame())
    verdicts = dict(dropin_table(checks)[["impl", "dropin"]].itertuples(index=False)) if checks is not None else {}
    asv_failed = failed.groupby("impl").size() if len(failed) else pd.Series(dtype=int)
    rows = []
    for impl in impl_order(impls):
        c = {s: int(counts.at[impl, s]) if impl in counts.index and s in counts.columns else 0
             for s in ("pass", "fail", "skip")}
        nf = int(asv_failed.get(impl, 0))
        rows.append({"impl": impl, **c, "asv_failed": nf, "bad": bool(c["fail"] or nf),
                     "dropin": verdicts.get(impl, "")})
    return pd.DataFrame(rows, columns=["impl", "pass", "fail", "skip", "asv_failed", "bad", "dropin"])


def dropin_table(checks: pd.DataFrame) -> pd.DataFrame:
    """A row per module implementation: each drop-in check's status and reason, and the verdict
    ("yes", or "no: " and the checks that failed)."""
    rows = checks[checks["check"].str.startswith(dropin.PREFIX)]
    out = []
    for impl in impl_order(set(rows["impl"])):
        mine = rows[rows["impl"] == impl]
        by_check = {r.check: (r.status, r.reason) for r in mine.itertuples(index=False)}
        failed = [c.removeprefix(dropin.PREFIX) for c in dropin.CHECKS if by_check.get(c, ("",))[0] == "fail"]
        out.append({"impl": impl, "dropin": "no: " + ", ".join(failed) if failed else "yes",
                    **{c: by_check.get(c, ("", ""))[0] for c in dropin.CHECKS},
                    **{c + "_reason": by_check.get(c, ("", ""))[1] for c in dropin.CHECKS}})
    return pd.DataFrame(out, columns=["impl", "dropin", *dropin.CHECKS, *(c + "_reason" for c in dropin.CHECKS)])


def failing_checks(checks: pd.DataFrame) -> pd.DataFrame:
    """Failing output checks grouped by implementation and reason, with the first 8 cases."""
    fails = output_checks(checks)
    fails = fails[fails["status"] == "fail"]
    if fails.empty:
        return pd.DataFrame(columns=["impl", "reason", "count", "cases"])
    fails = fails.assign(where=fails["check"] + " " + fails["case"] + " " + fails["dtype"] + " " + fails["device"])
    agg = fails.groupby(["impl", "reason"], sort=True)["where"].agg(["count", lambda s: ", ".join(s[:8])])
    agg.columns = ["count", "cases"]
    return agg.reset_index()


def torch_error(checks: pd.DataFrame) -> pd.DataFrame:
    """The worst error against float64 of each implementation and dtype, as a multiple of torch's own."""
    have = checks[checks["torch_error_ratio"].notna() & (checks["status"] == "pass")]
    return have.groupby(["impl", "dtype"])[["torch_error_ratio", "torch_error_ratio_max"]].max().reset_index()


def compare_runs(rated: pd.DataFrame, old: int, new: int) -> pd.DataFrame:
    """Cases in both files ``old`` and ``new``: new/old of the medians and ``verdict.classify``'s call."""
    cols = [*CASE, "value", "noisy"]
    m = rated.loc[rated["file"] == new, cols].merge(rated.loc[rated["file"] == old, cols], on=CASE,
                                                    suffixes=("", "_old"))
    m["ratio"] = m["value"] / m["value_old"]
    m["change"] = [classify(o, n, RUN_FACTOR) for o, n in zip(m["value_old"], m["value"], strict=True)]
    return m.sort_values(["ratio", "impl", "shape"], ascending=[False, True, True]).reset_index(drop=True)


COMPILE_KINDS = ("compile_cold", "compile_warm", "graphs", "graph_breaks")


def compile_table(rated: pd.DataFrame, latest: pd.DataFrame) -> pd.DataFrame:
    """Per compiled variant and case of the latest files: eager and compiled time, the speedup
    of compiling, compile time cold and warm, graphs, graph breaks, and the calls after
    which compiling pays.

    The speedup is the variant's interleaved speedup over the baseline divided by its
    eager implementation's (each timed in alternating blocks with the baseline, in several
    processes), its interval from theirs (``low``/``high``: the variant's low over the
    eager's high, and the reverse) and its verdict by :func:`verdict.classify`
    (``speedup_source`` "interleaved").  Where either was not recorded (older results), the
    quotient of the two wall times, ``speedup_source`` "wall time" and no verdict.
    ``speedup_ratio``: the same from each one's ratio to F.linear (1 thread), where recorded.

    Break-even: the cold compile time over the time each call saves (the eager wall time
    less that over the speedup); infinite when the compiled call is no faster.
    """
    cols = ["file", "impl", "base", "shape", "dtype", "device", "mode", "eager", "compiled", "speedup",
            "low", "high", "speedup_source", "speedup_verdict", "speedup_ratio", *COMPILE_KINDS, "break_even"]
    ok = rated[rated["status"] == "ok"]
    variants = ok[[compiled.is_compiled(i) for i in ok["impl"]]]
    if variants.empty:
        return pd.DataFrame(columns=cols)
    keys = ["file", "shape", "dtype", "device", "mode"]
    mine = ["impl", *keys, "value", "speedup", "low", "high", "speedup_source"]
    t = variants[mine].rename(columns={"value": "compiled", "speedup": "_sc", "low": "_lc", "high": "_hc",
                                       "speedup_source": "_src_c"})
    t["base"] = [compiled.base_of(i)[0] for i in t["impl"]]
    eager = ok[mine].rename(columns={"impl": "base", "value": "eager", "speedup": "_se", "low": "_le",
                                     "high": "_he", "speedup_source": "_src_e"})
    t = t.merge(eager, on=["base", *keys], how="left")
    costs = latest[latest["kind"].isin(COMPILE_KINDS) & (latest["status"] == "ok")]
    if len(costs):
        wide = costs.pivot_table(index=["impl", *keys], columns="kind", values="value", aggfunc="first")
        t = t.merge(wide.reset_index(), on=["impl", *keys], how="left")
    for k in COMPILE_KINDS:
        if k not in t.columns:
            t[k] = np.nan
    interleaved = ((t["_src_c"] == "interleaved") & (t["_src_e"] == "interleaved")).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        t["speedup"] = np.where(interleaved, t["_sc"] / t["_se"], t["eager"] / t["compiled"])
        t["low"] = np.where(interleaved, t["_lc"] / t["_he"], np.nan)
        t["high"] = np.where(interleaved, t["_hc"] / t["_le"], np.nan)
    t["speedup_source"] = np.where(interleaved, "interleaved", "wall time")
    t["speedup_verdict"] = [
        (classify(1.0, 1 / s, SPEEDUP_FACTOR, significant=not (lo_ <= 1 <= hi_)) if i and s > 0 else "")
        for i, s, lo_, hi_ in zip(interleaved, t["speedup"], t["low"], t["high"], strict=True)]
    # The same speedup from each one's interleaved ratio to F.linear (the history's metric).
    ratios = latest[(latest["kind"] == "ratio") & (latest["status"] == "ok")][["impl", *keys, "value"]]
    t = t.merge(ratios.rename(columns={"value": "_rc"}), on=["impl", *keys], how="left")
    t = t.merge(ratios.rename(columns={"impl": "base", "value": "_re"}), on=["base", *keys], how="left")
    t["speedup_ratio"] = t["_re"] / t["_rc"]
    saved = t["eager"] * (1 - 1 / t["speedup"])
    t["break_even"] = np.where(saved > 0, np.ceil(t["compile_cold"] / saved.where(saved > 0)), np.inf)
    order_ = {s: i for i, s in enumerate(sweep.ALL_SHAPES)}
    t["_o"] = [order_.get(s, len(order_)) for s in t["shape"]]
    return t.sort_values(["file", "base", "_o", "mode"]).drop(columns="_o")[cols].reset_index(drop=True)


# The "implementation" of the model table's row that takes, for each case, the fastest way measured.
