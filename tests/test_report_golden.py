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
from pathlib import Path

import markupsafe
import pandas as pd
import pytest

from linear_impls import history
from linear_impls.report import analysis, load_checks, load_pytest_benchmark, load_results

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
    assert set(data.frame["kind"]) == {"time", "ratio", "instructions", "memory"}
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
