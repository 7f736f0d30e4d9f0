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
from .load import CASE, FIXED

# (q75 - q25) / median above this marks a measurement as noisy.
NOISY_IQR = 0.2
# Two pytest-benchmark runs: new/old beyond this either way is a change (no CI is recorded).
RUN_FACTOR = 1.10
# A shape counts as square-ish (for the peak) when its rows, in and out features are
# within this factor of each other.
SQUARISH = 4.0
BENCH_CASE = ["benchmark", *CASE]
# One timed case of one file, across implementations: what a speedup compares within.
RATE_GROUP = ["file", "benchmark", "shape", "dtype", "device", "mode"]
# A speedup is "faster" or "slower" beyond this factor either way, and only when its interval
# (the spread between processes, widened by the case's null control) excludes 1: two ways
# that run the same kernel must read "same".
SPEEDUP_FACTOR = 1.05
# A case measured above this fraction of its roof shows the roof as unreached, not a percentage.
ABOVE_ROOF = 1.05


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
    """The speedup of each timed row from ``Speedup.track_speedup`` where one was recorded:
    the baseline and the implementation in alternating blocks in one process, in several
    processes.

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
    """Why a sweep (default: the default sweep) skips a case by design (limits, budget); None if
    it should run.

    Memory-based skips depend on the machine that ran and cannot be reproduced here.
    """
    if shape is None:
        return "malformed shape"
    sw = sweep_def or sweep.SWEEPS["default"]
    variant = compiled.base_of(impl)
    if variant is not None:
        if not sw.in_compile_subset(shape.id, dtype, mode):
            return f"compiled variants run on the {sw.name} sweep's compile subset only"
        if impl in registry.names():  # the variant's own limits (reduce-overhead: CUDA only)
            limit = registry.get(impl).limits.excludes(dtype=dtype, device=device, rank=len(shape.input_shape))
            if limit:
                return f"{impl}: {limit}"
        impl = variant[0]  # otherwise the base implementation's limits apply
    workspace = 0
    if impl in registry.names():
        if registry.get(impl).untimed:
            return f"{impl}: {registry.get(impl).untimed}"
        lim = registry.get(impl).limits
        limit = lim.excludes(dtype=dtype, device=device, rank=len(shape.input_shape))
        if limit:
            return f"{impl}: {limit}"
        if lim.workspace:
            workspace = lim.workspace(shape.rows, shape.in_features, shape.out_features, itemsize(dtype) or 4)
    budget = sw.max_call_seconds
    est = sweep.estimated_seconds(shape, dtype, device, mode, workspace)
    if est > budget:
        return f"estimated {est * 1e3:.0f} ms a call, over the {sw.name} sweep's {budget * 1e3:.0f} ms budget"
    return None


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
    for name, fixed in FIXED.items():
        if fixed["kind"] == "time" and fixed["mode"] not in bench_names:
            bench_names[fixed["mode"]] = f"bench_linear.{name}"
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


# What the side-by-side tables show per machine, in the order shown in a cell.
SIDE_KINDS = (("time", "wall time"), ("ratio", "time over F.linear's, one thread"),
              ("instructions", "instructions per call"))


def side_by_side(latest: pd.DataFrame) -> pd.DataFrame:
    """Cases measured by two or more of the latest files: a row per case and file, a column per kind.

    Columns: device, dtype, mode, shape, impl, file, failed, and one per ``SIDE_KINDS`` kind.
    """
    kinds = [k for k, _ in SIDE_KINDS]
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


def squareness(shape: sweep.Shape) -> float:
    dims = (shape.rows, shape.in_features, shape.out_features)
    return max(dims) / max(min(dims), 1)


def _sweep_peak(grp: pd.DataFrame) -> tuple[float, str]:
    """Without a measured ceiling: the best GFLOP/s on the largest square-ish shape the sweep measured."""
    cand = grp[grp["sq"] <= SQUARISH]
    if cand.empty:
        cand = grp
    top_shape = cand.loc[cand["flops"].idxmax(), "shape"]
    on_top = cand[cand["shape"] == top_shape]
    best = on_top.loc[on_top["gflops"].idxmax()]
    return float(best["gflops"]), f"no ceiling measured: the sweep's best, {best['impl']} at {top_shape}"


# The ops of the ceiling's own kernels (torch.mm, and F.linear's addmm): a case whose forward
# runs one of them reaches at most that kernel's rate, so a faster case than the ceiling is
# a faster spell of the machine, not a faster kernel.
CEILING_OPS = frozenset({"mm", "addmm"})
# A case lifts the memory roof only if its tensors are beyond every cache, as the GEMV
# stream the bandwidth was measured on is (a float32 4096 x 4096 matrix): a smaller one may
# run from a cache, faster than any memory bandwidth.
BEYOND_CACHES_BYTES = 64 * 2**20


def _same_kernel(ok: pd.DataFrame, dispatch: pd.DataFrame | None) -> pd.Series:
    """Per forward case: does it run the ceiling's own GEMM (its op trace holds one of
    ``CEILING_OPS``)?  Without traces, f_linear's cases do: the ceiling calls F.linear."""
    same = ok["impl"] == "f_linear"
    if dispatch is not None and not dispatch.empty:
        runs = {(r.file, r.impl, r.shape, r.dtype, r.device)
                for r in dispatch[dispatch["mode"] == "forward"].itertuples(index=False)
                if CEILING_OPS & set(r.sequence.split(", "))}
        same |= np.array([(f, i, s, t, d) in runs for f, i, s, t, d in
                          zip(ok["file"], ok["impl"], ok["shape"], ok["dtype"], ok["device"], strict=True)], dtype=bool)
    return same


def _lifted(grp: pd.DataFrame, peak: float, bandwidth: float | None, source: str,
            shapes: dict, itemsize_: int) -> tuple[float, float | None, str, str]:
    """The roof's peak and bandwidth raised to the best rate of a case that runs the
    ceiling's own kernel, where one ran faster than the ceiling measured it; with the
    sentences that say so (peak source, bandwidth source)."""
    bw_source = ""
    same = grp[grp["same_kernel"]]
    if not same.empty:
        top = same.loc[same["gflops"].idxmax()]
        if top["gflops"] > peak:
            source = (f"{top['impl']} at {top['shape']}, which runs the ceiling's own GEMM, ran at "
                      f"{top['gflops']:.3g} GFLOP/s, above the {peak:.3g} its benchmark measured in a slower "
                      f"spell of the machine: the roof is the faster")
            peak = float(top["gflops"])
        if bandwidth:
            big = same[[shapes[s].tensor_bytes(itemsize_) >= BEYOND_CACHES_BYTES for s in same["shape"]]]
            if not big.empty:
                rate = big["gflops"] / big["ai"]
                if rate.max() > bandwidth:
                    t = big.loc[rate.idxmax()]
                    bw_source = (f"{t['impl']} at {t['shape']} streamed {rate.max():.3g} GB/s, above the "
                                 f"{bandwidth:.3g} measured: the roof is the faster")
                    bandwidth = float(rate.max())
    return peak, bandwidth, source, bw_source


def rooflines(rated: pd.DataFrame, ceilings: pd.DataFrame, dispatch: pd.DataFrame | None = None) -> list[dict]:
    """Per file, device and dtype: the roof, each forward case against it, each implementation's best.

    The roof at arithmetic intensity I is min(peak, bandwidth x I): the machine's own
    ceilings (``linear_impls.ceilings``, recorded by the suite: ``Ceilings`` per dtype,
    ``MemoryBandwidth`` per device).  Forward cases only: the intensity is the forward's (FLOPs over the
    bytes of x, W, b and y).  Without a measured peak, the sweep's own best stands in,
    and the page says so.  A case that runs the ceiling's own kernel (``dispatch``: the op
    traces) faster than the ceiling measured it raises the roof to its rate: on a shared
    machine the ceiling's few seconds can fall in a slow spell, and what the machine did
    once it can do.
    """
    ok = rated[(rated["status"] == "ok") & (rated["mode"] == "forward")
               & np.isfinite(rated["gflops"].astype(float))].copy()
    if ok.empty:
        return []
    shapes = shape_info(ok["shape"].unique())
    items = {d: itemsize(d) for d in ok["dtype"].unique()}
    ok["ai"] = [shapes[s].arithmetic_intensity(items[d]) if shapes[s] is not None and items[d] else np.nan
                for s, d in zip(ok["shape"], ok["dtype"], strict=True)]
    ok["sq"] = [squareness(shapes[s]) if shapes[s] is not None else np.inf for s in ok["shape"]]
    ok = ok[ok["ai"].notna()]
    ok["same_kernel"] = _same_kernel(ok, dispatch)
    ceiling = {(r.file, r.dtype, r.device, r.kind): r.value for r in ceilings.itertuples(index=False)}
    out = []
    for (file_id, device, dtype), grp in ok.groupby(["file", "device", "dtype"], sort=True):
        peak = ceiling.get((file_id, dtype, device, "peak"))
        bandwidth = ceiling.get((file_id, "", device, "bandwidth"))
        source = "measured: the best of a large GEMM and a GEMV (Ceilings.track_peak_gflops)"
        bandwidth_source = ""
        if peak is None:
            peak, source = _sweep_peak(grp)
        else:
            peak, bandwidth, source, bandwidth_source = _lifted(grp, peak, bandwidth, source, shapes, items[dtype])
        grp = grp.copy()
        grp["roof"] = np.minimum(peak, bandwidth * grp["ai"]) if bandwidth else peak
        # A case whose tensors fit in the device's cache runs from it, call after call: its
        # memory roof is the cache's bandwidth (measured on CUDA: ceilings.cache_bandwidth).
        cache_bw = ceiling.get((file_id, "", device, "cache_bandwidth"))
        cache_bytes = ceiling.get((file_id, "", device, "cache_bytes"))
        grp["in_cache"] = False
        if cache_bw and cache_bytes:
            grp["in_cache"] = [shapes[s].tensor_bytes(items[d]) <= cache_bytes
                               for s, d in zip(grp["shape"], grp["dtype"], strict=True)]
            grp.loc[grp["in_cache"], "roof"] = np.minimum(peak, cache_bw * grp.loc[grp["in_cache"], "ai"])
        grp["of_roof"] = grp["gflops"] / grp["roof"]
        # Above the roof is no result but a ceiling its benchmark did not reach (older results
        # measured a GEMM only; caches can beat a bandwidth measured beyond them).
        grp["above_roof"] = grp["of_roof"] > ABOVE_ROOF
        best = grp.loc[grp.groupby("impl")["of_roof"].idxmax()].set_index("impl")
        best = best.loc[impl_order(best.index)].reset_index()
        out.append({"file": int(file_id), "machine": grp["machine"].iloc[0], "env": grp["env"].iloc[0],
                    "device": device, "dtype": dtype, "peak": float(peak), "bandwidth": bandwidth,
                    "ridge": float(peak / bandwidth) if bandwidth else None, "peak_source": source,
                    "bandwidth_source": bandwidth_source,
                    "cache_bandwidth": cache_bw, "cache_bytes": cache_bytes,
                    "n_in_cache": int(grp["in_cache"].sum()),
                    "best": best[["impl", "shape", "gflops", "ai", "roof", "of_roof", "above_roof"]],
                    "points": grp[["impl", "shape", "ai", "gflops", "roof", "of_roof", "above_roof"]]
                    .sort_values(["impl", "ai"]).reset_index(drop=True)})
    return out


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
        both = frame[frame["file"].isin([prev["file"], last["file"]]) & frame["kind"].isin(history.DECIDING)
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
