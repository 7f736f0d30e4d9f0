"""The report pinned on hand-made results (tests/data/report/, written by make_report_fixtures.py).

Two machines, three commits, a 30% step in one case's instruction counts, a case that
failed in asv, a case the newest commit dropped, a hostile implementation name and
CPU string, an unreadable file, a checks file and two pytest-benchmark runs.

The analysis tables are asserted exactly (CSV under golden/) and the whole page
against golden/index.html.  A deliberate change to the report, the registry's
built-ins or the default sweep changes them: look at the diff, then rewrite them with
``pytest tests/test_report_golden.py --update-golden``.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import markupsafe
import pandas as pd
import pytest

from linear_impls import history
from linear_impls.report import analysis, load_checks, load_pytest_benchmark, load_results, modelstep, roofline

from .conftest import run_linbench

DATA = Path(__file__).resolve().parent / "data" / "report"
GOLDEN = DATA / "golden"
HOSTILE = "<img src=x onerror=alert(1)>&\"'"
IMPLS = ["nn_linear", "f_linear", "mul_sum", "einsum", HOSTILE]
COMMIT = {c: c * 40 for c in "abc"}


@pytest.fixture(scope="module")
def data():
    return load_results(DATA / "results")


@pytest.fixture(scope="module")
def latest(data):
    files = analysis.latest_files(data.files)
    return files, data.frame[data.frame["file"].isin(files["file"])]


def golden_csv(request, name: str, frame: pd.DataFrame) -> None:
    """``frame`` must equal golden/<name>.csv exactly (floats to 6 significant digits)."""
    text = frame.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    path = GOLDEN / f"{name}.csv"
    if request.config.getoption("--update-golden"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing: run with --update-golden once"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, "\n".join(difflib.unified_diff(expected.splitlines(), text.splitlines(), "golden",
                                                            "now", lineterm="", n=1))


def test_loading_reads_every_good_file_and_names_the_bad_one(data):
    assert sorted(data.files["path"]) == sorted(
        [f"runner-a/{c * 8}-virtualenv-py3.11-torch2.13.0.json" for c in "abc"]
        + ["runner-b/cccccccc-virtualenv-py3.11-torch2.13.0.json"])
    assert [w for w in data.warnings if "0000dead-broken.json" in w and "Error parsing JSON" in w]
    assert set(data.files["threads"]) == {"2"}
    assert set(data.frame["kind"]) == {"time", "ratio", "instructions", "memory", "compile_cold", "compile_warm",
                                       "graphs", "graph_breaks", "speedup"}
    # asv's statistics come through asv.results: the 99% interval and quartiles of each timing.
    row = data.frame[(data.frame["impl"] == "f_linear") & (data.frame["shape"] == "64x256x256")
                     & (data.frame["benchmark"] == "bench_linear.Inference.time_forward")
                     & (data.frame["commit"] == COMMIT["a"])].iloc[0]
    assert (row["value"], row["ci_a"], row["q75"], row["number"], row["repeat"]) == pytest.approx(
        (58e-6, 58e-6 * 0.95, 58e-6 * 1.03, 100, 10))


def test_latest_rates_table(request, latest):
    _files, frame = latest
    rated = analysis.rates(frame)
    cols = ["machine", "commit", "impl", "shape", "mode", "status", "value", "gflops", "speedup", "best", "noisy"]
    table = rated[cols].sort_values(cols[:5]).reset_index(drop=True)
    golden_csv(request, "latest_rates", table)
    failed = table[table["status"] == "failed"]
    assert failed[["machine", "impl", "shape", "mode"]].values.tolist() == [
        ["runner-a", "mul_sum", "64x256x256", "forward_backward"], ["runner-b", "mul_sum", "64x256x256",
                                                                   "forward_backward"]]
    best = table[table["best"]]
    assert set(best["impl"]) == {"f_linear"}  # the fastest in every group of the fixture


def test_missing_and_dropped_cases(request, data, latest):
    files, frame = latest
    missing = analysis.missing_cases(frame, files["file"], IMPLS)
    summary = missing.groupby(["file", "status", missing["reason"] != ""]).size().reset_index(name="n")
    summary.columns = ["file", "status", "by_design", "n"]
    golden_csv(request, "missing_counts", summary)
    # einsum 1x64x64 was measured by the second commit and not by the third.
    dropped = analysis.only_in_older(data.frame, files)
    file_c = int(files.loc[files["machine"] == "runner-a", "file"].iloc[0])
    assert dropped == {file_c: 6}  # time forward, time training, ratio x2, instructions x2


def test_history_finds_the_one_step(request, data):
    thresholds = history.load_thresholds(DATA / "asv.conf.json")
    changes = history.find_changes(data.frame[data.frame["status"] != "skipped"], data.files, thresholds)
    golden_csv(request, "changes", changes)
    assert changes[["machine", "impl", "shape", "mode", "kind", "before_commit", "after_commit"]].values.tolist() \
        == [["runner-a", "mul_sum", "64x256x256", "forward", "instructions", COMMIT["b"], COMMIT["c"]]]
    assert changes["ratio"].iloc[0] == pytest.approx(1.3, rel=1e-4)


def test_side_by_side(request, latest):
    table = analysis.side_by_side(latest[1])
    golden_csv(request, "side_by_side", table)
    # runner-b is 1.4x slower in wall time, and the ratio and counts are the same on both.
    f = table[(table["impl"] == "f_linear") & (table["shape"] == "64x256x256") & (table["mode"] == "forward")]
    assert f["time"].iloc[1] / f["time"].iloc[0] == pytest.approx(1.4)
    assert f["ratio"].nunique() == 1 and f["instructions"].nunique() == 1


def test_checks_and_pytest_benchmark_tables(request, latest):
    warnings: list[str] = []
    checks = load_checks(DATA / "checks.json", warnings)
    failed = latest[1][latest[1]["status"] == "failed"]
    counts = analysis.check_counts(checks, failed, IMPLS)
    golden_csv(request, "check_counts", counts)
    assert counts.loc[counts["bad"], "impl"].tolist() == [HOSTILE, "mul_sum"]
    pb = load_pytest_benchmark([DATA / "pytest-benchmark"], warnings)
    rated = analysis.rates(pb.frame)
    runs = pb.files.sort_values("date")["file"].tolist()
    compare = analysis.compare_runs(rated, runs[0], runs[1])
    golden_csv(request, "pytest_compare", compare)
    assert dict(zip(compare["impl"], compare["change"], strict=True)) == {
        "mul_sum": "slower", "f_linear": "same", "nn_linear": "same"}
    assert warnings == []


def test_page_matches_golden(request, tmp_path):
    """The whole page, built by the CLI in a fresh process (built-ins only, no plugins)."""
    out = tmp_path / "index.html"
    proc = run_linbench("report", "--results", str(DATA / "results"), "--checks", str(DATA / "checks.json"),
                        "--asv-conf", str(DATA / "asv.conf.json"), "--pytest-benchmark", str(DATA / "pytest-benchmark"),
                        "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    assert HOSTILE not in page and str(markupsafe.escape(HOSTILE)) in page
    assert "<script" not in page.lower() and "<img" not in page
    path = GOLDEN / "index.html"
    if request.config.getoption("--update-golden"):
        path.write_text(page, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert page == expected, "\n".join(list(difflib.unified_diff(expected.splitlines(), page.splitlines(), "golden",
                                                                 "now", lineterm="", n=1))[:80])
    # The page's figures as data, beside it: the same stem, .json.
    figures = (tmp_path / "index.json").read_text(encoding="utf-8")
    path = GOLDEN / "index.json"
    if request.config.getoption("--update-golden"):
        path.write_text(figures, encoding="utf-8")
    assert figures == path.read_text(encoding="utf-8"), "\n".join(list(difflib.unified_diff(
        path.read_text(encoding="utf-8").splitlines(), figures.splitlines(), "golden", "now", lineterm="", n=1))[:80])


def test_figures_load_with_json_normalize_and_say_which_speedups_were_interleaved(tmp_path):
    out = tmp_path / "index.html"
    proc = run_linbench("report", "--results", str(DATA / "results"), "--asv-conf", str(DATA / "asv.conf.json"),
                        "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "index.json").read_text())
    speedups = pd.json_normalize(data["speedups"])
    a = speedups[(speedups["machine"] == "runner-a") & ~speedups["impl"].str.startswith("compiled_")]
    # runner-a's latest commit has interleaved speedups (its compiled variant none); runner-b only wall times.
    assert set(a["speedup_source"]) == {"interleaved"}
    assert set(speedups.loc[speedups["machine"] == "runner-b", "speedup_source"]) == {"wall time"}
    row = a[(a["impl"] == "f_linear") & (a["shape"] == "1x64x64") & (a["mode"] == "forward")].iloc[0]
    assert row["verdict"] == "faster" and row["low"] < row["speedup"] < row["high"]
    # 60/58 µs: 1.03x, within the factor: the same.
    row = a[(a["impl"] == "f_linear") & (a["shape"] == "64x256x256") & (a["mode"] == "forward")].iloc[0]
    assert row["verdict"] == "same"
    assert {"machine", "env", "commit", "device", "dtype", "mode", "shape", "impl", "baseline", "speedup", "low",
            "high", "verdict"} <= set(speedups.columns)
    roof = pd.json_normalize(data["roofline"])
    assert {"gflops", "roof_gflops", "fraction_of_roof"} <= set(roof.columns) and len(roof)
    verdict = pd.json_normalize(data["verdict"])
    assert len(verdict) and set(verdict["rank"]) >= {1}


def test_verdict_table(request, data, latest):
    files, frame = latest
    rated = analysis.rates(frame)
    table = analysis.verdicts(rated)
    flat = table.assign(ranking=[" ".join(f"{i}:{g:.4f}:{k}" for i, g, k in r) for r in table["ranking"]],
                        fastest=[" ".join(f"{i}:{n}" for i, n in r) for r in table["fastest"]],
                        failed=[" ".join(r) for r in table["failed"]])
    golden_csv(request, "verdicts", flat)
    a = table[(table["file"] == int(files.loc[files["machine"] == "runner-a", "file"].iloc[0]))
              & (table["mode"] == "forward")].iloc[0]
    # f_linear: 4.0/3.5 at 1x64x64 and 60/58 at 64x256x256, so sqrt(1.1429 x 1.0345).
    assert a["ranking"][0][0] == "f_linear" and a["ranking"][0][1] == pytest.approx(1.0874, abs=1e-4)
    assert a["ranking"][0][2] == a["n_shapes"] == 2
    train = table[table["mode"] == "forward_backward"]
    assert all(r == ["mul_sum"] for r in train["failed"])  # its 64x256x256 training step failed in asv
    mul_sum = dict((i, k) for i, _g, k in train["ranking"].iloc[0])["mul_sum"]
    assert mul_sum == 1  # the failed shape does not count


def test_what_changed_at_the_latest_commit(data):
    thresholds = history.load_thresholds(DATA / "asv.conf.json")
    changes = history.find_changes(data.frame[data.frame["status"] != "skipped"], data.files, thresholds)
    since = analysis.since_previous(data.frame, data.files, changes)
    assert since[["machine", "previous", "latest", "slower", "faster"]].values.tolist() == [
        ["runner-a", COMMIT["b"], COMMIT["c"], 1, 0]]
    # Deciding cases in both commits: 5 implementations x 2 shapes x 2 modes x 2 metrics, less
    # einsum 1x64x64 (dropped) and mul_sum 64x256x256 training (failed) in each metric.
    assert since["unchanged"].iloc[0] == 40 - 4 - 2 - 1


def test_roofline_against_measured_ceilings(data, latest):
    files, frame = latest
    roofs = {r["machine"]: r for r in roofline.rooflines(analysis.rates(frame), data.ceilings)}
    a, b = roofs["runner-a"], roofs["runner-b"]
    assert (a["peak"], a["bandwidth"], a["ridge"]) == (200.0, 20.0, 10.0)
    pts = a["points"].set_index(["impl", "shape"])
    f = pts.loc[("f_linear", "64x256x256")]  # 21.3 FLOP/byte: above the ridge, under the peak
    assert f["roof"] == 200.0 and f["of_roof"] == pytest.approx(f["gflops"] / 200)
    m = pts.loc[("mul_sum", "1x64x64")]  # 0.48 FLOP/byte: under the bandwidth's slope
    assert m["roof"] == pytest.approx(20.0 * m["ai"]) and m["roof"] < 200
    # runner-b measured no ceilings: the sweep's best stands in, and says so.
    assert b["bandwidth"] is None and "no ceiling measured" in b["peak_source"]


def test_compiled_variant_table(request, latest):
    table = analysis.compile_table(analysis.rates(latest[1]), latest[1])
    golden_csv(request, "compile", table)
    a = table[table["file"] == int(latest[0].loc[latest[0]["machine"] == "runner-a", "file"].iloc[0])].iloc[0]
    assert (a["impl"], a["base"], a["shape"]) == ("compiled_mul_sum", "mul_sum", "64x256x256")
    assert a["speedup"] == pytest.approx(3.0)
    # 19 s of cold compile over the 540 µs each call saves (810 µs eager, 270 µs compiled).
    assert a["break_even"] == pytest.approx(19.0 / 540e-6, rel=1e-3, abs=1)
    assert (a["compile_warm"], a["graphs"], a["graph_breaks"]) == (0.5, 1, 0)


def test_model_step_tables(request, latest):
    from linear_impls import sweepfile
    from linear_impls.report import load_models

    (model,) = load_models(DATA / "results", [], [])
    assert isinstance(model, sweepfile.SweepFile) and model.counts()[("1x64x64", "float32", "cpu")] == 3
    rated = analysis.rates(latest[1])
    totals, cases = modelstep.model_steps(rated, [model])
    golden_csv(request, "model_totals", totals)
    golden_csv(request, "model_cases", cases)
    complete = totals[totals["complete"]]
    for _key, g in complete.groupby(["file", "sweep", "device", "dtype", "mode"]):
        fastest = g[g["impl"] == modelstep.FASTEST_PER_SHAPE]["seconds_per_step"]
        assert len(fastest) == 1 and (fastest.iloc[0] <= g["seconds_per_step"] * (1 + 1e-12)).all()
        # The total is the count-weighted sum: the baseline's own time over its null control.
        inter = g[g["speedup_source"] == "interleaved"]
        assert (inter["low"] <= inter["speedup"]).all() and (inter["speedup"] <= inter["high"]).all()
    # Each case's share of the baseline's step adds up to the step.
    assert cases.groupby(["file", "mode"])["share"].sum().to_numpy() == pytest.approx(1.0)
    # By hand, runner-a forward: 3 x t(1x64x64) + 2 x t(64x256x256) for the baseline.
    a = int(latest[0].loc[latest[0]["machine"] == "runner-a", "file"].iloc[0])
    t = rated[(rated["file"] == a) & (rated["mode"] == "forward") & (rated["impl"] == "nn_linear")]
    base = t.set_index("shape")["value"]
    f = rated[(rated["file"] == a) & (rated["mode"] == "forward") & (rated["impl"] == "f_linear")].set_index("shape")
    want = 3 * base["1x64x64"] / f.loc["1x64x64", "speedup"] + 2 * base["64x256x256"] / f.loc["64x256x256", "speedup"]
    got = totals[(totals["file"] == a) & (totals["mode"] == "forward") & (totals["impl"] == "f_linear")]
    assert got["seconds_per_step"].iloc[0] == pytest.approx(want)
