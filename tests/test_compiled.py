"""torch.compile'd variants: derived from the registry, timed in steady state only, their
compile cost measured, checked like every implementation.  Tiny shapes: compiling runs a
C++ compiler."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import linear_impls
from linear_impls import bench, compiled, results, sweep

from .conftest import asv_config, run_asv, run_linbench

TINY = dataclasses.replace(sweep.SWEEPS["quick"], compile_shapes=("1x8x8",))


@pytest.fixture
def default_stance():
    yield
    torch.compiler.set_stance("default")


def test_a_variant_is_derived_from_its_implementation():
    name = compiled.register_compiled("f_linear")
    rec, base = linear_impls.get(name), linear_impls.get("f_linear")
    assert name == "compiled_f_linear" and compiled.base_of(name) == ("f_linear", "default")
    assert rec.description.startswith("torch.compile of f_linear") and base.description in rec.description
    assert rec.limits == base.limits
    assert compiled.register_compiled("f_linear") == name  # once only
    assert compiled.base_of("f_linear") is None


def test_outside_the_compile_subset_a_variant_is_skipped_with_the_reason():
    with pytest.raises(bench.CaseSkipped, match="compile subset"):
        bench.prepare(compiled.register_compiled("f_linear"), "3x2x3", "float32", "cpu", "forward", check=False,
                      sweep_def=TINY)


def test_a_recompile_in_a_timed_call_fails_instead_of_being_timed(default_stance):
    case = bench.prepare(compiled.register_compiled("f_linear"), "1x8x8", "float32", "cpu", "forward",
                         check=False, sweep_def=TINY)
    case.step()  # steady state: compiled in prepare, no recompile now
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # dynamo guards on the thread count: the next call recompiles
    try:
        with pytest.raises(RuntimeError, match="recompile"):
            case.step()
    finally:
        torch.set_num_threads(threads)


def test_compile_cost_is_measured_cold_and_warm():
    cost = bench.compile_cost(compiled.register_compiled("mul_sum"), "1x8x8", "float32", "cpu", "forward")
    assert cost["graphs"] == 1 and cost["graph_breaks"] == 0
    # Cold runs inductor and a C++ compiler; warm finds the cache: seconds against far less.
    assert cost["cold"] > cost["warm"] > -0.01 and cost["cold"] > 0.1


def test_asv_fails_a_case_that_recompiles_while_timed(tmp_path):
    """Real asv: the compiled variant of a plugin that recompiles on every call is failed, not timed."""
    import sys

    config = asv_config(tmp_path)
    assert run_asv(config, "machine", "--yes", "--machine", "linbench-test").returncode == 0
    case = r"^bench_linear\.Inference\.time_forward\('compiled_recompiling_linear', '1x64x64', 'float32', 'cpu'\)$"
    proc = run_asv(config, "run", "-E", f"existing:{sys.executable}", "--set-commit-hash", _head(), "--machine",
                   "linbench-test", "--show-stderr", "-b", case, plugins="recompile_plugin",
                   env_extra={"LINBENCH_SWEEP": "default", compiled.ENV: "recompiling_linear"})
    out = proc.stdout + proc.stderr
    assert "Detected recompile" in out, out[-3000:]
    (res,) = results.iter_files(tmp_path / "results")
    got = {c.params: c.value for c in results.iter_cases(res) if c.benchmark.endswith("Inference.time_forward")}
    assert got[("'compiled_recompiling_linear'", "'1x64x64'", "'float32'", "'cpu'")] is None  # failed, not timed


def _head() -> str:
    import subprocess

    from .conftest import ROOT

    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_check_reports_graph_breaks_and_fails_a_wrong_compiled_output():
    proc = run_linbench("check", "--impl", "graph_break_linear", "--impl", "compile_wrong", "--compile",
                        "graph_break_linear,compile_wrong", "--dtype", "float32", "--quiet",
                        plugins="compile_planted_plugin", timeout=900)
    assert proc.returncode == 1, proc.stderr[-2000:]
    table = {line.split()[0]: line.split()[1:5] for line in proc.stdout.splitlines()
             if line.split()[:1] and line.split()[0] in {"graph_break_linear", "compile_wrong",
                                                          "compiled_graph_break_linear", "compiled_compile_wrong"}}
    # Right in eager mode, both; compiled, the one that drops its bias fails with the reason.
    assert table["graph_break_linear"][1] == table["compile_wrong"][1] == "0"
    assert table["compiled_graph_break_linear"][1] == "0" and int(table["compiled_compile_wrong"][1]) > 0
    assert "compiled_compile_wrong" in proc.stdout and "off by" in proc.stdout
    # The graph break is named with its cause.
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("compiled_graph_break_linear:"))
    assert "2 graph breaks" in line and "item()" in line
    assert "compiled_compile_wrong: 1 graph, 0 graph breaks" in proc.stdout


def test_an_unknown_name_to_compile_is_one_line_exit_2():
    proc = run_linbench("check", "--compile", "no_such_impl")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no_such_impl" in proc.stderr


def test_without_a_cpp_compiler_a_variant_is_na_with_the_reason(monkeypatch):
    name = compiled.register_compiled("f_linear")
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    with pytest.raises(bench.CaseSkipped, match="no C.. compiler"):
        bench.prepare(name, "1x8x8", "float32", "cpu", "forward", check=False, sweep_def=TINY)
    from linear_impls import checks

    res = checks.run_check(linear_impls.get(name), checks.CASES[1], "float32", "cpu", "forward")
    assert res.status == "skip" and "no C++ compiler" in res.reason
