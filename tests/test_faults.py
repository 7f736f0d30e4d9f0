"""Faulty implementations and bad input never stop a run or lose a result."""

from __future__ import annotations

import json
import re

import pytest

from linear_impls import asvrun, checks, sweep

from .conftest import run_linbench

FAULTY = {
    "bad_raises": "raised RuntimeError: kernel not implemented",
    "bad_nan": "non-finite",
    "bad_shape": "has shape",
    "bad_segfault": "SIGSEGV",
    "bad_abort": "SIGABRT",
    "bad_sleep": "timed out",
    "bad_oom": "out of memory",
}


@pytest.fixture(scope="module")
def faulty_check():
    return run_linbench("check", "--impl", "bad_*", "--impl", "f_linear", "--impl", "einsum", "--dtype", "float32",
                        "--timeout", "3", "--memory-limit", "6", "--json", plugins="check_faulty_plugin",
                        timeout=600)


def test_every_good_result_comes_out(faulty_check):
    assert faulty_check.returncode == 1, faulty_check.stderr[-2000:]
    rows = json.loads(faulty_check.stdout)
    per_impl = len(checks.CASES) * len(checks.CHECKS)
    for good in ("f_linear", "einsum"):
        mine = [r for r in rows if r["impl"] == good]
        assert len(mine) == per_impl and all(r["status"] == "pass" for r in mine)


@pytest.mark.parametrize("impl", sorted(FAULTY))
def test_each_faulty_one_is_reported_with_its_reason(faulty_check, impl):
    rows = [r for r in json.loads(faulty_check.stdout) if r["impl"] == impl]
    assert len(rows) == len(checks.CASES) * len(checks.CHECKS), "a result went missing"
    if impl == "bad_nan":  # an empty output holds no NaN: those cases rightly pass
        rows = [r for r in rows if 0 not in r["shape"]]
    assert all(r["status"] == "fail" for r in rows)
    assert FAULTY[impl] in rows[0]["reason"], rows[0]["reason"]


def test_table_output_lists_failures(tmp_path):
    proc = run_linbench("check", "--impl", "bad_shape", "--impl", "f_linear", "--dtype", "float64",
                        plugins="check_faulty_plugin")
    assert proc.returncode == 1
    assert "FAILED CHECKS" in proc.stdout and "bad_shape" in proc.stdout and "has shape" in proc.stdout
    assert "f_linear" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


def test_user_shape_is_checked():
    proc = run_linbench("check", "--impl", "f_linear", "--dtype", "float32", "--shape", "2x3x40x24", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [r for r in json.loads(proc.stdout) if r["case"] == "sweep_2x3x40x24"]
    assert {r["check"] for r in rows} == {"forward", "backward"} and rows[0]["shape"] == [2, 3, 40]


@pytest.mark.parametrize("shape", ["64x", "0x-1x3", "axb", "64", "1x0x4", "", "3.5x2"])
def test_malformed_shape_is_one_line_exit_2(shape):
    proc = run_linbench("check", "--impl", "f_linear", "--shape", shape)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "shape" in lines[0], lines


def test_report_missing_results_folder(tmp_path):
    proc = run_linbench("report", "--results", str(tmp_path / "nope"), "--out", str(tmp_path / "i.html"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "does not exist" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_report_skips_corrupt_file_and_reports_the_rest(asv_results_dir, tmp_path):
    import shutil

    results = tmp_path / "results"
    shutil.copytree(asv_results_dir, results)
    machine_dir = next(p for p in results.iterdir() if p.is_dir())
    (machine_dir / "deadbeef-broken.json").write_text("{ not json")
    out = tmp_path / "index.html"
    proc = run_linbench("report", "--results", str(results), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "deadbeef-broken.json" in proc.stderr and "warning" in proc.stderr
    assert "f_linear" in out.read_text()


def test_memory_estimate_skips_before_allocating():
    import linear_impls

    shape = sweep.parse_shape("8x128x768x3072")
    reason = sweep.skip_reason(linear_impls.get("mul_sum"), shape, "float32", "cpu", "forward",
                               sweep.SWEEPS["full"], free_bytes=2 * 2**30)
    assert reason and "GiB free on cpu" in reason
    assert sweep.skip_reason(linear_impls.get("f_linear"), shape, "float32", "cpu", "forward",
                             sweep.SWEEPS["full"], free_bytes=64 * 2**30) is None


def test_resume_skips_recorded_cases(asv_results_dir):
    path = next(p for p in asv_results_dir.glob("*/*.json") if p.name != "machine.json")
    head = path.name.split("-")[0]
    target = asvrun.Target(path.parent.name, (json.loads(path.read_text())["env_name"],))
    done = asvrun.existing_cases(asv_results_dir, head, target)
    assert not asvrun.existing_cases(asv_results_dir, head, asvrun.Target("another-machine", target.envs))
    recorded = "bench_linear.Inference.time_forward('f_linear', '3x2x3', 'float32', 'cpu')"
    failed = "bench_linear.Inference.time_forward('faulty_abort', '3x2x3', 'float32', 'cpu')"
    assert recorded in done and failed in done
    pats = [re.compile(p) for c in asvrun.chunks(sweep.SWEEPS["quick"], ["float32"], done) for p in c.patterns]
    assert not any(p.search(recorded) for p in pats)
    todo = "bench_linear.Inference.time_forward('f_linear', '64x256x256', 'float32', 'cpu')"
    assert any(p.search(todo) for p in pats)


def test_a_resumed_run_leaves_out_the_asv_runs_with_nothing_left(asv_results_dir):
    import itertools

    found = json.loads((asv_results_dir / "benchmarks.json").read_text())
    everything = {f"{name}({', '.join(combo)})" for name, bench in found.items()
                  if isinstance(bench, dict) and bench.get("params") for combo in itertools.product(*bench["params"])}
    quick = sweep.SWEEPS["quick"]
    whole = asvrun.chunks(quick, ["float32"], set())

    def pending(skip):
        return [c.label for c in asvrun.pending(asvrun.chunks(quick, ["float32"], skip), whole,
                                                asv_results_dir / "benchmarks.json", skip)]

    assert pending(everything) == []
    todo = "bench_linear.Inference.time_forward('f_linear', '64x256x256', 'float32', 'cpu')"
    assert todo in everything
    left = pending(everything - {todo})
    assert len(left) == 1 and left == [c.label for c in whole if any(re.search(p, todo) for p in c.patterns)]
    # Without asv's list of benchmarks nothing is left out.
    assert len(asvrun.pending(whole, whole, asv_results_dir / "no-such.json", everything)) == len(whole)
