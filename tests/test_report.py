"""The summary page (linear_impls/report/) on real asv results, real pytest-benchmark runs and planted variants.

The exact tables and page on hand-made results are pinned in test_report_golden.py.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import markupsafe
import pytest

from linear_impls import report, sweep
from linear_impls import results as results_mod
from linear_impls.report import ReportError, analysis, build_report, load
from linear_impls.units import fmt

from .conftest import run_linbench

ROOT = Path(__file__).resolve().parent.parent
REAL_RESULTS = ROOT / ".asv" / "results"
EVIL = "<script>alert(1)</script>"


def fmt_time(seconds: float) -> str:
    return fmt(seconds, "seconds")


def fmt_gflops(gflops: float) -> str:
    return fmt(gflops, "gflops")


def escape(text: object) -> str:
    """As the page escapes (Jinja2's autoescaping): ``"`` becomes ``&#34;``."""
    return str(markupsafe.escape(str(text)))


# asv_results_dir: the session fixture in conftest.py (a real short asv run).


@pytest.fixture
def results(asv_results_dir, tmp_path) -> Path:
    """A private copy of the results, safe to modify."""
    dest = tmp_path / "results"
    shutil.copytree(asv_results_dir, dest)
    return dest


def result_files(results_dir: Path) -> list[Path]:
    return sorted(p for p in results_dir.glob("*/*.json") if p.name != "machine.json")


def latest_files(results_dir: Path) -> list[Path]:
    """The newest results file of each machine and environment, as the report picks them."""
    best: dict[tuple, tuple] = {}
    for p in result_files(results_dir):
        d = json.loads(p.read_text())
        key = (p.parent.name, d["env_name"])
        if key not in best or (d["date"], d["commit_hash"]) > best[key][0]:
            best[key] = ((d["date"], d["commit_hash"]), p)
    return [v[1] for v in best.values()]


def unrepr(s: str) -> str:
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] == "'" else s


def cases(path: Path):
    """(benchmark, params dict, row dict) for every combination of one results file."""
    for case in results_mod.iter_cases(results_mod.read(path)):
        pnames = load.known_param_names().get(load.short(case.benchmark))
        if pnames is None:
            continue
        params = dict(zip(pnames, (unrepr(c) for c in case.params), strict=True))
        stats = {f"stats_{k}": v for k, v in (case.stats or {}).items()}
        yield case.benchmark, params, {"result": case.value, **stats}


def measured(value) -> bool:
    return isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value))


def build(results_dir: Path, tmp_path: Path, **kwargs) -> tuple[report.ReportSummary, str]:
    out = tmp_path / "reports" / "index.html"
    summary = build_report(results_dir, out, **kwargs)
    return summary, out.read_text(encoding="utf-8")


def rewrite(path: Path, change) -> None:
    """Load a results file, let ``change(data)`` modify it, write it back."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def rename_impl(data: dict, old: str, new: str) -> None:
    for entry in data["results"].values():
        params = entry[data["result_columns"].index("params")]
        if params:
            params[0] = [repr(new) if unrepr(v) == old else v for v in params[0]]


# --- the page ---------------------------------------------------------------------------


def test_page_shows_every_impl_and_shape(results, tmp_path):
    summary, page = build(results, tmp_path)
    assert summary.out == tmp_path / "reports" / "index.html"
    assert summary.n_results_files == len(result_files(results))
    assert summary.warnings == []
    assert page.startswith("<!DOCTYPE html>")
    impls, shapes = set(), set()
    n_ok = 0
    for path in latest_files(results):
        for _bench, params, row in cases(path):
            impls.add(params["impl"])
            if measured(row["result"]):
                n_ok += 1
                if load.fixed()[load.short(_bench)]["kind"] == "time":
                    shapes.add(params["shape"])
    assert summary.n_cases == n_ok
    assert shapes, "the latest results measured no timed case"
    for impl in impls:
        assert f"<th>{impl}</th>" in page, impl
    for shape in shapes:
        assert re.search(rf"<th[^>]*>{re.escape(shape)}</th>", page), shape


def test_gflops_and_speedup_cells(results, tmp_path):
    _summary, page = build(results, tmp_path)
    checked = 0
    for path in latest_files(results):
        rows = [(b, p, r) for b, p, r in cases(path) if measured(r["result"]) and "time_" in b]
        base = {(b, p["shape"], p["dtype"], p.get("device")): r["result"] for b, p, r in rows
                if p["impl"] == "nn_linear"}
        # Where an interleaved speedup was recorded, the page shows it instead of the quotient.
        interleaved = {(p["impl"], p["shape"], p["dtype"], p["device"], p["mode"]): r["result"]
                       for b, p, r in cases(path) if measured(r["result"]) and "Speedup." in b}
        for bench, params, row in rows:
            mode = load.fixed()[load.short(bench)]["mode"]
            gflops = sweep.parse_shape(params["shape"]).flops(mode) / row["result"] / 1e9
            assert fmt_gflops(gflops) in page
            assert fmt_time(row["result"]) in page
            b = base.get((bench, params["shape"], params["dtype"], params.get("device")))
            speedup = interleaved.get((params["impl"], params["shape"], params["dtype"], params["device"], mode))
            if speedup is not None:
                assert f"{speedup:.2f}×" in page
            elif b is not None:
                assert f"{b / row['result']:.2f}×" in page
            checked += 1
    assert checked
    assert "GFLOP/s" in page and 'class="cell best' in page
    assert "noisy" in page  # the legend at least


def test_page_is_self_contained(results, tmp_path):
    _summary, page = build(results, tmp_path)
    assert "<svg" in page and "<?xml" not in page
    assert "<script" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page must not fetch anything"
    assert "<link" not in page.replace('<link rel="icon" href="data:,">', "")
    for section in ("perf", "peak", "checks", "history", "env"):
        assert f'id="{section}"' in page


def test_environment_section(results, tmp_path):
    _summary, page = build(results, tmp_path)
    for path in latest_files(results):
        d = json.loads(path.read_text())
        assert d["commit_hash"] in page
        torch_version = d["params"].get("torch") or d.get("requirements", {}).get("torch")
        if torch_version:
            assert torch_version in page
        machine = json.loads((path.parent / "machine.json").read_text()) \
            if (path.parent / "machine.json").is_file() else d["params"]
        if machine.get("cpu"):
            assert escape(machine["cpu"]) in page


# --- escaping -------------------------------------------------------------------------------


def test_strings_from_results_checks_and_plugins_are_escaped(results, tmp_path, planted):
    path = latest_files(results)[0]

    def plant(data):
        rename_impl(data, "f_linear", EVIL)
        data["params"]["cpu"] = 'CPU "onload=alert(5) <b>'

    rewrite(path, plant)
    (path.parent / "machine.json").write_text(json.dumps({"cpu": '<img src=x onerror="alert(6)">', "machine": "vm"}))
    planted("evil_description", lambda w, b: (lambda x: x @ w.T + b),
            description='<script>alert(3)</script> "onload=alert(4)')
    checks = tmp_path / "checks.json"
    checks.write_text(json.dumps([
        {"impl": EVIL, "check": "forward", "case": "rank2", "shape": [5], "dtype": "float32", "device": "cpu",
         "status": "fail", "reason": '<script>alert(2)</script> "onload=x'},
        {"impl": "nn_linear", "check": "forward", "case": "rank2", "shape": [5], "dtype": "float32",
         "device": "cpu", "status": "pass", "reason": ""},
    ]))
    _summary, page = build(results, tmp_path, checks_json=checks)
    assert "<script" not in page.lower()
    assert '"onload' not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert escape('<script>alert(2)</script> "onload=x') in page
    assert escape('<script>alert(3)</script> "onload=alert(4)') in page
    assert escape('<img src=x onerror="alert(6)">') in page


# --- checks and failures --------------------------------------------------------------------


def test_gate_counts_and_asv_failures(results, tmp_path):
    path = latest_files(results)[0]
    failed_case = {}

    def fail_one(data):
        cols = data["result_columns"]
        for bench, entry in data["results"].items():
            res = entry[cols.index("result")]
            for i, v in enumerate(res):
                if measured(v) and "time_" in bench:
                    res[i] = None
                    combo = list(itertools.product(*entry[cols.index("params")]))[i]
                    failed_case.update(bench=bench, impl=unrepr(combo[0]), shape=unrepr(combo[1]))
                    return

    rewrite(path, fail_one)
    assert failed_case, "no measured timed case to turn into a failure"
    checks = tmp_path / "checks.json"
    rows = [{"impl": "einsum", "check": c, "case": f"case{i}", "shape": [2], "dtype": "float32", "device": "cpu",
             "status": s, "reason": "tolerance exceeded by 3.2x" if s == "fail" else ""}
            for i, (c, s) in enumerate([("forward", "pass")] * 5 + [("backward", "fail")] * 2
                                        + [("forward", "skip")] * 3)]
    checks.write_text(json.dumps(rows))
    summary, page = build(results, tmp_path, checks_json=checks)
    assert summary.n_failed >= 1
    check_row = re.search(r"<tr><th>einsum</th>(.*?)</tr>", page.split('id="checks"')[1]).group(1)
    assert re.findall(r">(\d+)<", check_row)[:3] == ["5", "2", "3"]
    assert "FAIL" in check_row
    assert "tolerance exceeded by 3.2x" in page
    assert re.search(r"class=[\"']cell failed", page)
    assert "Benchmarks that failed in asv" in page
    assert f"#{failed_case['bench']}?" in page


def test_bad_checks_file_is_a_report_error(results, tmp_path):
    with pytest.raises(ReportError, match="does not exist"):
        build(results, tmp_path, checks_json=tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ReportError, match="not valid JSON"):
        build(results, tmp_path, checks_json=bad)


# --- unusable and partial input ------------------------------------------------------------


def test_corrupt_file_is_skipped_with_a_warning(results, tmp_path):
    machine_dir = latest_files(results)[0].parent
    (machine_dir / "deadbeef-broken.json").write_text('{"commit_hash": "deadbeef", "results": {')
    (machine_dir / "cafef00d-notresults.json").write_text('{"hello": 1}')
    n_good = len(result_files(results)) - 2
    summary, page = build(results, tmp_path)
    assert summary.n_results_files == n_good
    assert any("deadbeef-broken.json" in w and "Error parsing JSON" in w for w in summary.warnings)
    assert any("cafef00d-notresults.json" in w for w in summary.warnings)
    assert "deadbeef-broken.json" in page  # the warning is on the page too


def test_missing_or_empty_directory_is_a_report_error(tmp_path):
    with pytest.raises(ReportError, match="does not exist"):
        build_report(tmp_path / "nowhere", tmp_path / "index.html")
    (tmp_path / "empty" / "vm").mkdir(parents=True)
    with pytest.raises(ReportError, match="no asv results"):
        build_report(tmp_path / "empty", tmp_path / "index.html")
    (tmp_path / "empty" / "vm" / "abc-env.json").write_text("garbage")
    with pytest.raises(ReportError, match="no usable asv results") as info:
        build_report(tmp_path / "empty", tmp_path / "index.html")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "index.html").exists()


def test_partial_results_build_and_mark_missing_cases(results, tmp_path):
    path = latest_files(results)[0]
    for other in result_files(results):
        if other != path:
            other.unlink()

    def interrupt(data):
        cols = data["result_columns"]
        names = sorted(n for n in data["results"] if ".Inference." in n or ".Training." in n)
        del data["results"]["bench_linear.Environment.track_threads"]
        for bench in names[1:]:  # only the first benchmark finished ...
            del data["results"][bench]
        res = data["results"][names[0]][cols.index("result")]
        done = [i for i, v in enumerate(res) if measured(v)]
        for i in done[len(done) // 2:]:  # ... and only half of it
            res[i] = float("nan")

    rewrite(path, interrupt)
    summary, page = build(results, tmp_path)
    assert summary.n_missing > 0
    assert 'class="cell missing"' in page
    assert "missing cases of the default sweep" in page
    assert "Only one commit" in page


def test_results_without_usable_benchmarks_still_build(results, tmp_path):
    path = latest_files(results)[0]

    def strip(data):
        data["results"] = {"bench_linear.Inference.time_forward": [None, [], "v"], "other.time_x": [1.0, [], "v"]}

    rewrite(path, strip)
    for other in result_files(results):
        if other != path:
            other.unlink()
    summary, page = build(results, tmp_path)
    assert summary.n_cases == 0 and summary.n_missing > 0
    assert any("time_forward" in w and "parameter axes" in w for w in summary.warnings)
    assert any("other.time_x" in w for w in summary.warnings)
    assert "No timed case was measured" in page


# --- history ------------------------------------------------------------------------------


def test_wall_time_alone_never_makes_a_change(results, tmp_path):
    """A doubled wall time with tight confidence intervals: once enough to be listed; now shown, never decided."""
    path = latest_files(results)[0]
    data = json.loads(path.read_text())
    cols = data["result_columns"]
    newer = copy.deepcopy(data)
    newer["commit_hash"] = "f" * 40
    newer["date"] = data["date"] + 3_600_000
    for name, entry in newer["results"].items():
        if ".Environment." in name:
            continue
        res = entry[cols.index("result")]
        entry[cols.index("result")] = [v * 2 if measured(v) else v for v in res]
    (path.parent / f"ffffffff-{data['env_name']}.json").write_text(json.dumps(newer))
    summary, page = build(results, tmp_path, asv_html="../asv/index.html")
    history = page.split('id="history"')[1].split('id="env"')[0]
    assert summary.n_changes == 0
    assert "No change in any case over the whole history" in history
    assert "none (older results: wall time only)" in history  # the fixture's run records no deciding metric
    assert "ffffffffffff" in history and "2 commits" in history


# --- speed --------------------------------------------------------------------------------


# --- pytest-benchmark runs ----------------------------------------------------------------

PB_CASES = ("f_linear", "nn_linear")
PB_SHAPE = "1x8x8"


def run_quick_gate(*args: str) -> subprocess.CompletedProcess:
    """pytest-benchmark on benchmarks/quick_gate, two small forward cases, a few rounds each."""
    selected = " or ".join(f"test_quick[{impl}-{PB_SHAPE}-float32-forward]" for impl in PB_CASES)
    env = {k: v for k, v in os.environ.items() if k != "LINEAR_IMPLS_PLUGINS"}
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "quick_gate" / "test_quick.py"),
           "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-o", "testpaths=", "-q", "-k", selected,
           "--benchmark-min-rounds=5", "--benchmark-max-time=0.05", "--benchmark-warmup=off", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), env=env, timeout=300,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def pb_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two real pytest-benchmark runs: (storage folder with a --benchmark-save run, a later --benchmark-json file)."""
    tmp = tmp_path_factory.mktemp("pytest-benchmark")
    storage = tmp / ".benchmarks"
    later = tmp / "after.json"
    for args in (["--benchmark-save=before", f"--benchmark-storage=file://{storage}"], [f"--benchmark-json={later}"]):
        proc = run_quick_gate(*args)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = list(storage.rglob("*.json"))
    assert len(saved) == 1 and saved[0].name == "0001_before.json", saved
    for path in (saved[0], later):
        names = sorted(b["extra_info"]["impl"] for b in json.loads(path.read_text())["benchmarks"])
        assert names == sorted(PB_CASES), names
    return storage, later


def pb_section(page: str) -> str:
    return page.split('<h2 id="pytest"')[1].split("<h2 ")[0]


def pb_run_block(section: str, name: str) -> str:
    return section.split(f">{name}</h3>")[1].split("<h3")[0]


def pb_compare_block(section: str) -> str:
    return section.split(">Latest run against the previous one</h3>")[1].split("<h3")[0]


def pb_medians(path: Path) -> dict[str, float]:
    return {b["extra_info"]["impl"]: b["stats"]["median"] for b in json.loads(path.read_text())["benchmarks"]}


def test_pytest_benchmark_runs_section(pb_runs, tmp_path):
    storage, later = pb_runs
    saved = next(storage.rglob("*.json"))
    summary, page = build(tmp_path / "no-asv-results", tmp_path, pytest_benchmark=[storage, later])
    assert summary.warnings == []
    assert (summary.n_results_files, summary.n_pytest_runs, summary.n_pytest_cases) == (0, 2, 2 * len(PB_CASES))
    assert "No asv results in" in page and "2 pytest-benchmark runs" in page
    assert '<a href="#pytest">pytest-benchmark runs</a>' in page
    assert 'id="perf"' not in page and 'id="env"' in page and 'id="checks"' in page
    section = pb_section(page)
    for path, name in ((saved, str(saved.relative_to(storage))), (later, str(later))):
        data = json.loads(path.read_text())
        assert data["commit_info"]["id"][:12] in section
        assert escape(data["machine_info"]["node"]) in section
        block = pb_run_block(section, escape(name))
        assert f"{PB_SHAPE} · float32 · forward" in block
        base = pb_medians(path)["nn_linear"]
        for bench in data["benchmarks"]:
            extra, stats = bench["extra_info"], bench["stats"]
            assert extra["torch"] in section and f"{extra['threads']} threads" in block
            row = re.search(rf"<tr><th>{extra['impl']}</th>(.*?)</tr>", block).group(1)
            assert fmt_time(stats["median"]) in row
            assert fmt_time(stats["iqr"]) in row
            assert f">{stats['rounds']}<" in row
            assert fmt_gflops(extra["flops"] / stats["median"] / 1e9) in row
            assert f"{base / stats['median']:.2f}×" in row
    compare = pb_compare_block(section)
    old, new = pb_medians(saved), pb_medians(later)
    assert compare.count("<tr><td") == len(PB_CASES)
    for impl in PB_CASES:
        row = re.search(rf'<tr><td class="(\w+)">(\w*)</td><th>{impl}</th>(.*?)</tr>', compare)
        ratio = new[impl] / old[impl]
        assert f">{ratio:.2f}<" in row.group(3)
        assert (row.group(2) == "slower") == (ratio > analysis.RUN_FACTOR), (impl, ratio, row.group(0))


def test_pytest_benchmark_slower_case_is_marked(pb_runs, tmp_path):
    """The later real run, with f_linear made twice as slow, as a third run an hour later."""
    _storage, later = pb_runs
    data = json.loads(later.read_text())
    data["datetime"] = (datetime.datetime.fromisoformat(data["datetime"]) + datetime.timedelta(hours=1)).isoformat()
    for bench in data["benchmarks"]:
        if bench["extra_info"]["impl"] == "f_linear":
            for key in ("median", "q1", "q3", "iqr", "mean", "min", "max"):
                bench["stats"][key] *= 2
    slower = tmp_path / "slower.json"
    slower.write_text(json.dumps(data))
    _summary, page = build(tmp_path / "no-asv-results", tmp_path, pytest_benchmark=[later, slower])
    compare = pb_compare_block(pb_section(page))
    assert "after.json" in compare and "slower.json" in compare
    assert re.search(r'<tr><td class="bad">slower</td><th>f_linear</th>.*?>2\.00<', compare)
    assert re.search(r'<tr><td class="ok">same</td><th>nn_linear</th>.*?>1\.00<', compare)
    assert "1 of 2 cases slower than 1.10×" in compare


def test_pytest_benchmark_next_to_asv_results(results, pb_runs, tmp_path):
    _summary, plain = build(results, tmp_path)
    assert 'id="pytest"' not in plain and "pytest-benchmark" not in plain
    assert '<a href="#env">Environment</a>' in plain and '<h2 id="env">5. Environment</h2>' in plain
    summary, page = build(results, tmp_path, pytest_benchmark=[pb_runs[1]])
    assert summary.n_pytest_runs == 1 and summary.n_results_files == len(result_files(results))
    for section in ("perf", "peak", "checks", "history", "pytest", "env"):
        assert f'id="{section}"' in page
    assert '<h2 id="pytest">5. pytest-benchmark runs</h2>' in page and '<h2 id="env">6. Environment</h2>' in page
    assert "Fewer than two runs" in pb_section(page)
    assert "<script" not in page


def test_foreign_pytest_benchmarks_are_skipped_with_a_warning(pb_runs, tmp_path):
    _storage, later = pb_runs
    data = json.loads(later.read_text())
    other = copy.deepcopy(data["benchmarks"][0])
    other.update(name="test_someone_elses_sort", extra_info={})
    data["benchmarks"] += [other, {"name": "test_no_stats", "extra_info": None}]
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(data))
    summary, page = build(tmp_path / "no-asv-results", tmp_path, pytest_benchmark=[mixed])
    assert summary.n_pytest_cases == len(PB_CASES)
    assert len(summary.warnings) == 1
    assert "mixed.json" in summary.warnings[0] and "2 of 4 benchmarks skipped" in summary.warnings[0]
    assert "test_someone_elses_sort" in summary.warnings[0]
    assert "test_someone_elses_sort" in page  # in the warnings box
    assert "<tr><th>f_linear</th>" in pb_section(page)


def test_pytest_benchmark_strings_are_escaped(pb_runs, tmp_path):
    _storage, later = pb_runs
    data = json.loads(later.read_text())
    data["machine_info"].update(node=EVIL, cpu={"brand_raw": '<img src=x onerror="alert(6)">'})
    data["commit_info"].update(id='<b onmouseover="x">', branch=EVIL)
    for bench in data["benchmarks"]:
        bench["extra_info"].update(torch=EVIL)
        if bench["extra_info"]["impl"] == "f_linear":
            bench["extra_info"]["impl"] = EVIL
    evil = tmp_path / f"{EVIL.replace('/', '_')}.json"
    evil.write_text(json.dumps(data))
    _summary, page = build(tmp_path / "no-asv-results", tmp_path, pytest_benchmark=[evil, later])
    assert "<script" not in page.lower() and "<img" not in page and "<b " not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pb_section(page)


def one_error_line(proc, *phrases) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("linbench: error:"), lines
    for p in phrases:
        assert p in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("kind", ["missing", "not-json", "not-pytest-benchmark", "benchmarks-not-a-list",
                                  "empty-folder"])
def test_bad_pytest_benchmark_input_is_one_line_exit_2(kind, tmp_path):
    target = tmp_path / f"{kind}.json"
    if kind == "not-json":
        target.write_text('{"benchmarks": [')
    elif kind == "not-pytest-benchmark":
        target.write_text(json.dumps({"commit_hash": "abc", "results": {}}))
    elif kind == "benchmarks-not-a-list":
        target.write_text(json.dumps({"benchmarks": {"test_x": {}}}))
    elif kind == "empty-folder":
        target = tmp_path / "empty-folder"
        (target / "machine-id").mkdir(parents=True)
        (target / "machine-id" / "notes.txt").write_text("no runs yet")
    out = tmp_path / "reports" / "index.html"
    proc = run_linbench("report", "--results", str(tmp_path / "no-asv-results"), "--checks", "", "--out", str(out),
                        "--pytest-benchmark", str(target))
    phrase = {"missing": "does not exist", "not-json": "not valid JSON", "not-pytest-benchmark": '"benchmarks" list',
              "benchmarks-not-a-list": '"benchmarks" list', "empty-folder": "no pytest-benchmark JSON files"}[kind]
    one_error_line(proc, str(target), phrase)
    assert not out.exists()


def test_cli_report_from_pytest_benchmark_only(pb_runs, tmp_path):
    storage, later = pb_runs
    out = tmp_path / "reports" / "index.html"
    args = ["report", "--results", str(tmp_path / "no-asv-results"), "--checks", "", "--out", str(out)]
    proc = run_linbench(*args, "--pytest-benchmark", str(storage), "--pytest-benchmark", str(later),
                        "--pytest-benchmark", str(later))  # the same file twice is one run
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert f"{2 * len(PB_CASES)} cases from 2 pytest-benchmark runs" in proc.stdout
    assert 'id="pytest"' in out.read_text(encoding="utf-8")
    # Neither asv results nor pytest-benchmark runs: nothing to build from.
    one_error_line(run_linbench(*args), "does not exist", "no-asv-results")


def test_cli_report_reads_one_checks_file_per_runner(tmp_path):
    # CI's pages job: the CPU runner's checks and the GPU runner's, read as one.
    data = Path(__file__).parent / "data" / "report"
    rows = json.loads((data / "checks.json").read_text())
    cpu = [r for r in rows if r["impl"] != "einsum"]
    cuda = [dict(r, device="cuda") for r in rows if r["impl"] == "einsum"]
    (tmp_path / "cpu.json").write_text(json.dumps(cpu))
    (tmp_path / "cuda.json").write_text(json.dumps(cuda))
    out = tmp_path / "index.html"
    proc = run_linbench("report", "--results", str(data / "results"), "--checks", str(tmp_path / "cpu.json"),
                        "--checks", str(tmp_path / "cuda.json"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    checks = page[page.index('id="checks"'):]
    assert re.search(r"<tr><th>einsum</th><td class=\"cell\">2</td>", checks), checks[:3000]
