"""What changed over a results history, decided by the metrics a shared machine cannot fake.

One rule for the summary page and asv's own regressions page: asv's step detection
(``asv.step_detect.detect_steps``, what ``asv publish`` runs) on each case's series
over commits, and a step is a change when ``verdict.classify`` calls it one: beyond
the metric's threshold in ``asv.conf.json``'s ``regressions_thresholds`` (the same
table asv's regressions page reads) either way, and larger than the segments' own scatter.  Only the metrics in
``deciding()`` decide; wall time is drawn beside them, never used to call a change,
because on a shared runner it moves 20-50% with no change at all.

This module is analysis only (pandas in, pandas out); the report renders it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import functioncounts, instructions, suite
from .verdict import SAME, classify


def metrics() -> tuple[suite.Metric, ...]:
    """The metrics the history draws, one per kind, from the catalogue (``suite.drawn``)."""
    return suite.drawn()


def deciding() -> tuple[str, ...]:
    """The kinds that decide a change (the catalogue's ``decides``); the others are only drawn."""
    return tuple(m.kind for m in suite.drawn() if m.decides)


# asv's own default when no regressions_thresholds entry matches.
ASV_DEFAULT_THRESHOLD = 0.05
# The band drawn around wall time: the run-to-run spread measured on the shared VM
# (benchmarks/README.md); a single run's median is good to about this much.
WALL_TIME_NOISE = 0.3


def load_thresholds(conf_path: Path | None) -> dict[str, float]:
    """``regressions_thresholds`` from an asv.conf.json (asv's JSON with // comments); {} if none."""
    from . import asvconf

    if conf_path is None or not Path(conf_path).is_file():
        return {}
    try:
        conf = asvconf.load(Path(conf_path))
    except Exception:  # asv's loader raises its own UserError on a malformed file
        return {}
    table = conf.get("regressions_thresholds") if isinstance(conf, dict) else None
    out = {}
    for regex, value in (table or {}).items():
        try:
            out[str(regex)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def threshold_for(benchmark: str, thresholds: dict[str, float]) -> float:
    """asv's rule: the largest threshold whose regex matches the benchmark's name, else 5%."""
    matched = [t for regex, t in thresholds.items() if re.match(regex, benchmark)]
    return max(matched) if matched else ASV_DEFAULT_THRESHOLD


CASE = ["machine", "env", "benchmark", "impl", "shape", "dtype", "device", "mode"]


def git_order(repo: Path | None) -> dict[str, int]:
    """Every commit of ``repo`` (all refs) with its position, parents first; {} without git."""
    import subprocess

    if repo is None or not (Path(repo) / ".git").exists():
        return {}
    out = subprocess.run(["git", "rev-list", "--topo-order", "--reverse", "--all"], cwd=repo,
                         capture_output=True, text=True)
    return {c: i for i, c in enumerate(out.stdout.split())} if out.returncode == 0 else {}


def ordered_commits(files: pd.DataFrame, order: dict[str, int] | None = None) -> pd.DataFrame:
    """Each machine and environment's commits, oldest first, with a position.

    By the commit date asv recorded; commits of one second (a rebase, a script) by
    ``order``, git's topological order, where the repository is at hand.
    """
    f = files.copy()
    f["_topo"] = f["commit"].map(order or {}).fillna(-1)
    f = f.sort_values(["machine", "env", "date", "_topo", "commit"], na_position="first")
    f["pos"] = f.groupby(["machine", "env"]).cumcount()
    return f[["file", "machine", "env", "commit", "date", "pos"]]


def find_changes(frame: pd.DataFrame, files: pd.DataFrame, thresholds: dict[str, float],
                 order: dict[str, int] | None = None) -> pd.DataFrame:
    """Every step over the whole history of each case, in the deciding metrics.

    ``frame`` is the report's long table (a row per results file, benchmark and
    parameter combination, with ``kind``, ``value`` and ``status``).  Returns one row
    per change: the case, the metric, the last commit before and the first after
    the step, the segment values on each side, their ratio and the threshold used.
    """
    from asv import step_detect

    cols = [*CASE, "kind", "before_commit", "after_commit", "before", "after", "ratio", "threshold",
            "n_commits"]
    rows = []
    pos = ordered_commits(files, order)
    data = frame[frame["kind"].isin(deciding()) & (frame["status"] == "ok")]
    if data.empty:
        return pd.DataFrame(columns=cols)
    data = data.drop(columns=["machine", "env", "commit"], errors="ignore").merge(pos, on="file")
    # Only a case whose whole series spans more than its threshold can hold a step beyond it:
    # deciding that per group in one pass leaves step detection to the few that moved.
    spread = data.groupby(CASE, sort=True)["value"].agg(["min", "max", "size"]).reset_index()
    spread["threshold"] = spread["benchmark"].map({b: threshold_for(b, thresholds)
                                                   for b in spread["benchmark"].unique()})
    moved = spread[(spread["size"] >= 2) & (spread["max"] > spread["min"] * (1 + spread["threshold"]))]
    data = data.merge(moved[[*CASE, "threshold"]], on=CASE).sort_values([*CASE, "pos"])
    for key, g in data.groupby(CASE, sort=True):
        y = g["value"].to_numpy(dtype=float)
        threshold = float(g["threshold"].iloc[0])
        steps = step_detect.detect_steps(list(y))
        commits = g["commit"].to_list()
        for (_l0, r0, v0, _m0, e0), (l1, _r1, v1, _m1, e1) in zip(steps, steps[1:], strict=False):
            # Beyond the threshold either way, and larger than the scatter on either side.
            if classify(v0, v1, 1 + threshold, significant=abs(v1 - v0) > max(e0, e1)) != SAME:
                rows.append([*key, g["kind"].iloc[0], commits[r0 - 1], commits[l1], v0, v1,
                             v1 / v0 if v0 else np.inf, threshold, len(g)])
    return pd.DataFrame(rows, columns=cols)


def series(frame: pd.DataFrame, files: pd.DataFrame, case: dict,
           order: dict[str, int] | None = None) -> dict[str, pd.DataFrame]:
    """A case's values over commits in every metric: {kind: frame with pos, commit, value, q25, q75}.

    Wall time is matched on the case's impl, shape, dtype, device and mode whatever its benchmark.
    """
    pos = ordered_commits(files, order)
    pos = pos[(pos["machine"] == case["machine"]) & (pos["env"] == case["env"])]
    sel = frame[(frame["status"] == "ok") & frame["file"].isin(pos["file"])]
    for k in ("impl", "shape", "dtype", "device", "mode"):
        sel = sel[sel[k] == case[k]]
    out = {}
    for kind, g in sel.groupby("kind"):
        g = g.drop(columns=["machine", "env", "commit"], errors="ignore").merge(pos, on="file").sort_values("pos")
        out[str(kind)] = g[["pos", "commit", "value", "q25", "q75"]].reset_index(drop=True)
    out["_commits"] = pos[["pos", "commit"]].reset_index(drop=True)
    return out


def function_deltas(results_dir: Path, change: pd.Series, top: int = 5,
                    loaded: dict | None = None) -> list[functioncounts.FunctionDelta] | None:
    """The functions behind a changed instruction count, from the per-function counts kept beside the results.

    None when either commit's counts were not kept (an older run, another results folder).
    ``loaded``: the counts files read so far, shared between calls (the report's loader
    reads each once for all of a page's changes).
    """
    if change["kind"] != "instructions":
        return None
    loaded = {} if loaded is None else loaded

    def counts(folder: Path, commit: str) -> dict:
        if (folder, commit, change["env"]) not in loaded:
            loaded[folder, commit, change["env"]] = functioncounts.load(folder, commit, change["env"])
        return loaded[folder, commit, change["env"]]

    key = instructions.case_key(change["impl"], change["shape"], change["dtype"], change["mode"])
    # The machine's own folder (linbench run, the gate), else the shared one (plain asv run).
    for folder in (Path(results_dir) / change["machine"], Path(results_dir)):
        folder = functioncounts.sidecar_dir(folder)
        base = counts(folder, change["before_commit"]).get(key)
        head = counts(folder, change["after_commit"]).get(key)
        if base and head:
            return functioncounts.delta(base["functions"], head["functions"], top)
    return None


DISPATCH_CHANGE = ["machine", "env", "impl", "shape", "dtype", "device", "mode", "commit", "previous_commit",
                   "added", "removed"]


def dispatch_changes(traces: pd.DataFrame, files: pd.DataFrame, order: dict[str, int] | None = None) -> pd.DataFrame:
    """Each case whose op sequence differs from the one at the previous commit that traced it,
    per machine and environment: the ops added and removed (``dispatch.changed_ops``).

    ``traces``: ``report.load``'s dispatch table (a row per results file and case)."""
    from . import dispatch

    if traces.empty:
        return pd.DataFrame(columns=DISPATCH_CHANGE)
    pos = ordered_commits(files, order)
    case = ["machine", "env", "impl", "shape", "dtype", "device", "mode"]
    t = traces.merge(pos, on="file").sort_values([*case, "pos"])
    rows = []
    for _key, g in t.groupby(case, sort=True):
        prev = None
        for r in g.itertuples(index=False):
            if prev is not None and list(r.ops) != list(prev.ops):
                added, removed = dispatch.changed_ops(list(prev.ops), list(r.ops))
                rows.append({"machine": r.machine, "env": r.env, "impl": r.impl, "shape": r.shape, "dtype": r.dtype,
                             "device": r.device, "mode": r.mode, "commit": r.commit, "previous_commit": prev.commit,
                             "added": added, "removed": removed})
            prev = r
    return pd.DataFrame(rows, columns=DISPATCH_CHANGE)
