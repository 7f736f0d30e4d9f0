"""``build_report``: load, analyse, render, write; the entry point of ``linbench report``."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import compiled, history, registry, sweep
from . import analysis, modelstep, render, roofline
from .load import Measurements, load_checks, load_models, load_pytest_benchmark, load_results


@dataclass
class ReportSummary:
    out: Path
    n_results_files: int  # results files read (corrupt ones excluded)
    n_cases: int  # measured cases (every benchmark) in the latest commit of each machine/env
    n_failed: int = 0  # cases that failed in asv in the latest commit of each machine/env
    n_missing: int = 0  # timed cases of the sweeps run (default: the default sweep) not measured, latest commit
    n_machines: int = 0
    n_commits: int = 0
    n_pytest_runs: int = 0  # pytest-benchmark files read
    n_pytest_cases: int = 0  # linbench benchmarks in them, all runs
    n_changes: int = 0  # changes found over the history (instruction counts, ratios)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Analysed:
    """What the asv sections share: the measurements, the latest files, and tables derived from them."""

    frame: pd.DataFrame
    files: pd.DataFrame
    machines: dict
    latest_files: pd.DataFrame
    latest: pd.DataFrame
    rated: pd.DataFrame
    missing: pd.DataFrame
    memory: pd.DataFrame
    only_older: dict[int, int]
    impls_all: list[str]
    ceilings: pd.DataFrame
    dispatch: pd.DataFrame | None = None  # op traces per results file and case (load.DISPATCH)
    # The history's changes, every machine and commit; "deltas": an instruction count's functions.
    changes: pd.DataFrame | None = None
    dispatch_changes: pd.DataFrame | None = None  # cases whose op sequence changed between commits
    since: pd.DataFrame | None = None  # what changed at each machine's latest commit
    models: list = field(default_factory=list)  # sweep files of users' models (sweepfile.SweepFile)
    model_totals: pd.DataFrame | None = None  # modelstep.model_steps: per model, implementation, step
    model_cases: pd.DataFrame | None = None  # ... and per case: its share of the step

    judged_by: dict = field(default_factory=dict)  # per latest file: the sweeps its run recorded (sweep.Sweep)

    def sweeps_for(self, file_id: int) -> list:
        """The sweeps a latest file is judged against: those its run recorded, else (plain asv) the default."""
        return self.judged_by.get(file_id) or [sweep.SWEEPS["default"]]

    @classmethod
    def of(cls, data: Measurements, results_dir: Path | None = None, models: list = (),
           warnings: list[str] | None = None) -> Analysed:
        latest_files = analysis.latest_files(data.files)
        latest = data.frame[data.frame["file"].isin(latest_files["file"])]
        # Implementations that are checked only have no row in the timing tables.
        impls_all = analysis.impl_order(set(data.frame["impl"]) | set(registry.timed_names()))
        rated = analysis.rates(latest)
        rated["within_noise"] = analysis.within_noise(rated)
        sweeps_of = _sweeps_of(results_dir, latest_files, models, warnings if warnings is not None else [])
        d = cls(data.frame, data.files, data.machines, latest_files, latest, rated,
                analysis.missing_cases(latest, latest_files["file"], impls_all, sweeps_of),
                latest[latest["kind"] == "memory"], analysis.only_in_older(data.frame, latest_files), impls_all,
                data.ceilings, data.dispatch, models=list(models))
        d.judged_by = {f: [sw for sw, _dtypes in v] for f, v in sweeps_of.items()}
        return d


def _sweeps_of(results_dir: Path | None, latest_files: pd.DataFrame, models: list,
               warnings: list[str]) -> dict[int, list]:
    """Per latest file, the sweeps ``linbench run`` recorded for it, each with the dtypes it was
    asked for (``asvrun.record_sweep``); a file without a record (plain asv) is judged against
    the default sweep.  A recorded sweep file that the results folder no longer keeps is left out,
    with a warning."""
    from .. import asvrun

    if results_dir is None:
        return {}
    files_of = {m.name: m for m in models}
    out: dict[int, list] = {}
    for f in latest_files.itertuples(index=False):
        recorded = asvrun.recorded_sweeps(results_dir, f.machine, f.commit, f.env)
        mine = []
        for name, rec in recorded.items():
            if rec.get("file"):
                if name not in files_of:
                    warnings.append(f"{f.machine}/{f.commit[:8]}: ran the sweep file {name!r}, which the results "
                                    f"folder does not keep (pass it with --sweep to judge its cases)")
                    continue
                sw = sweep.from_file(files_of[name])
            elif name in sweep.SWEEPS:
                sw = sweep.SWEEPS[name]
            else:
                continue
            mine.append((sw, list(rec.get("dtypes") or sw.dtypes)))
        if mine:
            out[f.file] = mine
    return out


def build_report(results_dir: Path, out: Path, *, checks_json: Path | Iterable[Path] | None = None,
                 asv_html: str = "asv/index.html", pytest_benchmark: Iterable[Path] = (),
                 asv_conf: Path | None = None, sweep_files: Iterable[Path] = ()) -> ReportSummary:
    """Build the summary page ``out`` from asv results under ``results_dir``.

    ``pytest_benchmark``: pytest-benchmark JSON files, or folders searched for
    ``*.json``, shown in a section of their own.  ``asv_conf``: the asv.conf.json whose
    ``regressions_thresholds`` decide what a change is in the history (asv's defaults
    without one).  ``sweep_files``: models' sweep files, beside those ``linbench run`` kept with
    the results, whose per-step totals the page shows.

    Raises ReportError when the results directory is missing or holds no usable
    results file and no pytest-benchmark run is given, when a pytest-benchmark path
    is missing or not pytest-benchmark JSON, or when ``checks_json`` is given but
    unusable; a corrupt results file is skipped and named in ``ReportSummary.warnings``.
    """
    results_dir, out = Path(results_dir), Path(out)
    pb_warnings: list[str] = []
    pb = load_pytest_benchmark(pytest_benchmark, pb_warnings)
    data = load_results(results_dir, allow_empty=pb is not None)
    warnings = data.warnings + pb_warnings
    if isinstance(checks_json, (str, Path)):
        checks_json = [checks_json]
    checks = (pd.concat([load_checks(Path(c), warnings) for c in checks_json], ignore_index=True)
              if checks_json else None)

    # Compiled variants in the results are derived here too, so the page can describe them.
    for name in set(data.frame["impl"]):
        variant = compiled.base_of(name)
        if variant is not None and variant[0] in registry.names():
            compiled.register_compiled(*variant)
    ids = render.Ids()
    sections: list[render.Section] = []
    n_changes = n_missing = 0
    impls_env = analysis.impl_order(set(data.frame["impl"]) | set(registry.names())
                                    | (set(pb.frame["impl"]) if pb is not None else set()))
    models = load_models(results_dir, sweep_files, warnings) if len(data.files) else []
    d = Analysed.of(data, results_dir, models, warnings) if len(data.files) else None
    failed = d.latest[d.latest["status"] == "failed"] if d else data.frame.iloc[0:0]
    verdict: list[dict] = []
    thresholds = history.load_thresholds(asv_conf)
    if d is not None:
        # Commits of one second (a rebase) are ordered as git orders them, where the repository is at hand.
        order = history.git_order(Path(asv_conf).resolve().parent if asv_conf else None)
        d.changes = history.find_changes(d.frame[d.frame["status"] != "skipped"], d.files, thresholds, order)
        # What each changed instruction count's functions did, read here: rendering reads no file.
        loaded: dict = {}
        d.changes["deltas"] = [history.function_deltas(results_dir, r, loaded=loaded) if results_dir else None
                               for _, r in d.changes.iterrows()]
        d.since = analysis.since_previous(d.frame, d.files, d.changes, order)
        d.dispatch_changes = history.dispatch_changes(d.dispatch, d.files, order)
        d.model_totals, d.model_cases = modelstep.model_steps(d.rated, d.models)
        verdict = render.verdict_block(d)
        sections.append(render.perf_section(d, ids, asv_html))
        if len(d.latest_files) >= 2:
            sections.append(render.machines_section(d, ids))
        model_section = render.model_section(d, ids)
        if model_section is not None:
            sections.append(model_section)
        sections.append(render.peak_section(d, ids))
        compile_section = render.compile_section(d, ids)
        if compile_section is not None:
            sections.append(compile_section)
        dispatch_section = render.dispatch_section(d, ids)
        if dispatch_section is not None:
            sections.append(dispatch_section)
        sections.append(render.checks_section(checks, failed, d.impls_all, asv_html))
        section, n_changes = render.history_section(d, ids, asv_html, thresholds, order)
        sections.append(section)
        n_missing = int(((d.missing["status"] == "missing") & (d.missing["reason"] == "")).sum())
    if pb is not None:
        sections.append(render.pytest_section(pb, ids))
    if d is None:
        sections.append(render.checks_section(checks, failed, impls_env, asv_html))
    sections.append(render.env_section(d, impls_env, d is not None))
    summary = ReportSummary(
        out=out, n_results_files=len(data.files),
        n_cases=int((d.latest["status"] == "ok").sum()) if d else 0, n_failed=len(failed), n_missing=n_missing,
        n_machines=data.files["machine"].nunique(), n_commits=data.files["commit"].nunique(),
        n_pytest_runs=len(pb.files) if pb is not None else 0, n_pytest_cases=len(pb.frame) if pb is not None else 0,
        warnings=warnings, n_changes=n_changes)
    page = render.render_page(summary, sections, asv_html, results_dir, verdict, thresholds)
    _write(out, page)
    _write(out.with_suffix(".json"), json.dumps(figures(d), indent=1, allow_nan=False, default=str) + "\n")
    return summary


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _clean(value):
    """JSON's value for a table cell: NaN and infinities are null, numpy scalars plain."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    return [{c: _clean(v) for c, v in zip(columns, row, strict=True)}
            for row in frame[columns].itertuples(index=False, name=None)]


def figures(d: Analysed | None) -> dict[str, list[dict]]:
    """The page's figures as flat records per section (``reports/index.json``), for
    ``pandas.json_normalize``: the numbers the page shows, never recomputed from them."""
    out: dict[str, list[dict]] = {"speedups": [], "roofline": [], "verdict": [], "dispatch": [],
                                  "dispatch_changes": [], "model": [], "model_cases": []}
    if d is None:
        return out
    meta = d.latest_files.set_index("file")[["machine", "env", "commit"]]
    base = registry.baseline()
    rated = d.rated[d.rated["status"] == "ok"]  # its rows carry machine, env and commit
    rated = rated.assign(baseline=base, verdict=[
        v if v else ("same" if same else "") for v, same in zip(rated["speedup_verdict"], rated["within_noise"],
                                                                 strict=True)])
    out["speedups"] = _records(rated, ["machine", "env", "commit", "device", "dtype", "mode", "shape", "impl",
                                       "baseline", "speedup", "low", "high", "verdict", "speedup_source",
                                       "null_low", "null_high", "value"])
    for r in out["speedups"]:
        r["seconds_per_call"] = r.pop("value")
    for roof in roofline.rooflines(d.rated, d.ceilings, d.dispatch):
        points = roof["points"].assign(machine=roof["machine"], env=roof["env"],
                                       commit=meta.loc[roof["file"], "commit"], device=roof["device"],
                                       dtype=roof["dtype"], mode="forward")
        points = points.rename(columns={"roof": "roof_gflops", "of_roof": "fraction_of_roof"})
        out["roofline"] += _records(points, ["machine", "env", "commit", "device", "dtype", "mode", "shape", "impl",
                                             "gflops", "roof_gflops", "fraction_of_roof", "above_roof"])
    for r in analysis.verdicts(d.rated).itertuples(index=False):
        m = meta.loc[r.file]
        for rank, (impl, speedup, k) in enumerate(r.ranking, 1):
            out["verdict"].append({"machine": m["machine"], "env": m["env"], "commit": m["commit"],
                                   "device": r.device, "dtype": r.dtype, "mode": r.mode, "impl": impl,
                                   "baseline": base, "rank": rank, "geomean_speedup": _clean(speedup),
                                   "shapes": k, "of_shapes": r.n_shapes,
                                   "fastest_on": dict(r.fastest).get(impl, 0)})
    if d.dispatch is not None and len(d.dispatch):
        latest = d.dispatch[d.dispatch["file"].isin(meta.index)].join(meta, on="file")
        latest = latest.assign(n_ops=[len(o) for o in latest["ops"]])
        out["dispatch"] = _records(latest, ["machine", "env", "commit", "device", "dtype", "mode", "shape", "impl",
                                            "sequence", "backward", "n_ops", "intermediate_bytes", "copies",
                                            "kernels"])
    keys = ["machine", "env", "commit", "sweep", "device", "dtype", "mode"]
    if d.model_totals is not None and len(d.model_totals):
        totals = d.model_totals.join(meta, on="file").assign(baseline=base)
        out["model"] = _records(totals, [*keys, "impl", "baseline", "seconds_per_step", "calls", "seconds_per_call",
                                         "speedup", "low", "high", "verdict", "speedup_source", "complete", "missing"])
    if d.model_cases is not None and len(d.model_cases):
        cases = d.model_cases.join(meta, on="file").assign(baseline=base)
        out["model_cases"] = _records(cases, [*keys, "shape", "count", "modules", "baseline", "base_seconds",
                                              "share", "best_impl", "best_speedup", "best_low", "best_high",
                                              "saves"])
    if d.dispatch_changes is not None:
        out["dispatch_changes"] = [{**r, "added": list(r["added"]), "removed": list(r["removed"])}
                                   for r in d.dispatch_changes.to_dict("records")]
    return out
