"""The first screen's speedups: interleaved with the baseline, intervals over processes
widened by the null control, and the verdict; the wall-time quotient only where no
interleaved speedup was recorded.  Hand-made asv results, read by the real loader."""

from __future__ import annotations

import math

import pytest

from linear_impls import bench, results
from linear_impls.report import analysis, load, load_results
from linear_impls.report.load import process_spread

MACHINE = {"machine": "m", "cpu": "test cpu"}
ENV = "virtualenv-py3.11-torch2.13.0"
N = bench.SPEEDUP_BLOCKS


def two_processes(first: float, second: float, per_process: int = N) -> dict:
    samples = [first] * per_process + [second] * per_process
    return {"result": (first + second) / 2, "samples": samples, "number": 1, "repeat": len(samples)}


def write(tmp_path, speedups: dict[str, tuple[float, float]] | None, commit="a" * 40, per_process: int = N):
    impls = ["nn_linear", "f_linear", "twice", "faster", "noisy"]
    # Wall times that say the opposite of the speedups: a separate-process quotient is not trusted.
    times = {"nn_linear": 10e-6, "f_linear": 5e-6, "twice": 5e-6, "faster": 20e-6, "noisy": 10e-6}
    benchmarks = {"bench_linear.Inference.time_forward": ([impls, ["64x256x256"], ["float32"], ["cpu"]],
                                                          [times[i] for i in impls])}
    if speedups is not None:
        benchmarks["bench_linear.Speedup.track_speedup"] = (
            [impls, ["64x256x256"], ["float32"], ["cpu"], ["forward"]],
            [two_processes(*speedups[i], per_process) for i in impls])
    results.write_file(tmp_path, MACHINE, commit, 1, ENV, benchmarks)


def rated(tmp_path):
    data = load_results(tmp_path)
    return analysis.rates(data.frame).set_index("impl")


def test_process_spread_splits_samples_by_process():
    lo, hi, sd, n = process_spread([1.0] * N + [2.0] * N, N)
    assert (lo, hi, n) == (1.0, 2.0, 2) and sd == pytest.approx(math.log(2) / math.sqrt(2))
    nothing = (None, None, None, None)
    assert process_spread([1.0] * N, N) == nothing  # one process: no spread between processes
    assert process_spread([1.0] * (N + 1), N) == nothing  # not whole processes: not split
    assert process_spread(None, N) == nothing


def test_interleaved_speedups_decide_the_verdict(tmp_path):
    write(tmp_path, {"nn_linear": (0.99, 1.01), "f_linear": (0.97, 0.98), "twice": (0.49, 0.51),
                     "faster": (1.30, 1.35), "noisy": (0.85, 1.20)})
    t = rated(tmp_path)
    assert set(t["speedup_source"]) == {"interleaved"}
    assert t.loc["twice", "speedup_verdict"] == "slower"
    assert t.loc["twice", "speedup"] == pytest.approx(0.50)
    assert t.loc["twice", "high"] < 1 < t.loc["faster", "low"]
    assert t.loc["faster", "speedup_verdict"] == "faster"
    # The same kernel reads the same: within the factor, whatever its interval.
    assert t.loc["f_linear", "speedup_verdict"] == "same"
    assert t.loc["noisy", "speedup_verdict"] == "same"  # its interval includes 1
    assert t.loc["nn_linear", "speedup_verdict"] == "same"
    # The spread between processes is pooled over the case: every interval is as wide (in
    # log terms), the noisy one's spread widening all of them.
    widths = (t["high"] / t["low"]).astype(float)
    assert widths.max() == pytest.approx(widths.min())
    # Two processes each: sd of the logs of a pair = |log ratio| / sqrt(2); their mean's
    # standard error divides that by sqrt(2) again; two of them either side.
    pairs = [(0.99, 1.01), (0.97, 0.98), (0.49, 0.51), (1.30, 1.35), (0.85, 1.20)]
    pooled = math.sqrt(sum(math.log(b / a) ** 2 / 2 for a, b in pairs) / len(pairs))
    assert math.log(widths.iloc[0]) == pytest.approx(2 * 2 * pooled / math.sqrt(2))
    noise = analysis.within_noise(t.reset_index()).to_numpy()
    assert list(noise) == [False, True, False, False, True]  # never the baseline's own row
    # The fastest is decided by the speedup, not by the wall times (which favour f_linear and twice).
    assert t.index[t["best"]].tolist() == ["faster"]


def test_a_noisy_or_biased_null_control_widens_every_interval_of_its_case(tmp_path):
    write(tmp_path, {"nn_linear": (0.70, 1.30), "f_linear": (0.97, 0.98), "twice": (0.49, 0.51),
                     "faster": (1.30, 1.35), "noisy": (0.85, 1.20)})
    t = rated(tmp_path)
    assert t.loc["faster", "speedup_verdict"] == "same"  # 1.3x is inside this case's noise
    assert t.loc["twice", "speedup_verdict"] == "slower"  # 0.5x is not
    assert (t.loc["nn_linear", "null_low"], t.loc["nn_linear", "null_high"]) == (0.70, 1.30)
    # Two instances of the baseline 15% apart, steady in each process: a bias between
    # instances that no spread between processes shows, and it widens the case's intervals.
    steady = {"f_linear": (0.97, 0.97), "twice": (0.50, 0.50), "faster": (1.30, 1.30), "noisy": (1.0, 1.0)}
    write(tmp_path / "fair", {"nn_linear": (1.0, 1.0), **steady})
    write(tmp_path / "biased", {"nn_linear": (1.15, 1.15), **steady})
    fair, biased = rated(tmp_path / "fair"), rated(tmp_path / "biased")
    assert fair.loc["faster", "low"] == pytest.approx(1.30)  # no spread anywhere: a point
    assert biased.loc["faster", "low"] == pytest.approx(1.30 / 1.15)
    assert biased.loc["faster", "speedup_verdict"] == "faster"


def test_without_interleaved_speedups_the_wall_time_quotient_stays_and_says_so(tmp_path):
    write(tmp_path, None)
    t = rated(tmp_path)
    assert set(t["speedup_source"]) == {"wall time"}
    assert t.loc["f_linear", "speedup"] == pytest.approx(2.0)
    assert set(t["speedup_verdict"]) == {""}
    assert all(math.isnan(v) for v in t["low"])


def test_one_median_per_process_reads_as_the_processes_it_came_from(tmp_path):
    """The speedup worker records each process's median; results from asv's rounds held
    every block: both split into the same processes."""
    steady = {"nn_linear": (1.0, 1.02), "f_linear": (0.97, 0.98), "twice": (0.49, 0.51),
              "faster": (1.30, 1.35), "noisy": (0.85, 1.20)}
    write(tmp_path / "blocks", steady)
    write(tmp_path / "medians", steady, per_process=1)
    blocks, medians = rated(tmp_path / "blocks"), rated(tmp_path / "medians")
    for col in ("speedup", "low", "high", "null_low", "null_high"):
        assert medians[col].astype(float).tolist() == pytest.approx(blocks[col].astype(float).tolist()), col
    assert medians["speedup_verdict"].tolist() == blocks["speedup_verdict"].tolist()
    assert load.samples_per_process([1.0, 1.1, 0.9]) == 1
    assert load.samples_per_process([1.0] * (2 * N)) == N
    assert process_spread([1.0], 1) == (None, None, None, None)  # one process: no interval


def test_the_speedup_worker_survives_faulty_implementations_in_real_asv(tmp_path):
    """Real asv, the real worker in two processes: a segfault and a raise fail their own
    cases with the reason, the good ones get one median per process."""
    import subprocess
    import sys

    from tests.conftest import ROOT, asv_config, run_asv

    config = asv_config(tmp_path)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(ROOT), capture_output=True, text=True,
                          check=True).stdout.strip()
    run_asv(config, "machine", "--yes", "--machine", "linbench-test")
    pattern = (r"^bench_linear\.Speedup\.\w+\('(?:f_linear|nn_linear|bad_segfault|bad_raises)', '1x8x8', "
               r"'float32', 'cpu', 'forward'\)$")
    proc = run_asv(config, "run", "-E", f"existing:{sys.executable}", "--set-commit-hash", head,
                   "--machine", "linbench-test", "--show-stderr", "--record-samples", "-b", pattern,
                   plugins="check_faulty_plugin",
                   env_extra={"LINBENCH_SELECT": pattern, "LINBENCH_SPEEDUP_PROCESSES": "2"})
    out = proc.stdout + proc.stderr
    data = load_results(tmp_path / "results")
    f = data.frame
    sp = f[(f["kind"] == "speedup") & (f["shape"] == "1x8x8") & (f["dtype"] == "float32") & (f["device"] == "cpu")
           & (f["mode"] == "forward")].set_index("impl")
    assert sp.loc["f_linear", "status"] == "ok" and sp.loc["nn_linear", "status"] == "ok", out[-3000:]
    assert sp.loc["f_linear", "proc_n"] == 2 and sp.loc["nn_linear", "proc_n"] == 2
    assert 0.7 < sp.loc["nn_linear", "value"] < 1.4  # the null control: the baseline against itself
    assert sp.loc["bad_segfault", "status"] == "failed" and sp.loc["bad_raises", "status"] == "failed"
    assert "the process died (signal SIGSEGV)" in out
    assert "kernel not implemented for this layout" in out


def test_the_compile_section_divides_interleaved_speedups(tmp_path, request):
    """compiled_mul_sum against mul_sum: each one's interleaved speedup over the baseline,
    divided, with the interval from theirs; wall times that say otherwise do not decide."""
    from linear_impls import compiled, registry

    if "compiled_mul_sum" not in registry.names():
        compiled.register_compiled("mul_sum")
        request.addfinalizer(lambda: registry.unregister("compiled_mul_sum"))
    impls = ["nn_linear", "mul_sum", "compiled_mul_sum"]
    case = [["64x256x256"], ["float32"], ["cpu"]]
    benchmarks = {
        # Wall times of separate processes: 1x between the two, by a slow spell.
        "bench_linear.Inference.time_forward": ([impls, *case], [100e-6, 300e-6, 300e-6]),
        "bench_linear.Speedup.track_speedup": ([impls, *case, ["forward"]],
                                               [two_processes(*p, 1) for p in ((0.99, 1.01), (0.25, 0.26),
                                                                                (0.75, 0.77))]),
        "bench_linear.CompileCost.track_cold_seconds": ([["compiled_mul_sum"], *case, ["forward"]], [2.0]),
    }
    results.write_file(tmp_path, MACHINE, "a" * 40, 1, ENV, benchmarks)
    latest = load_results(tmp_path).frame
    row = analysis.compile_table(analysis.rates(latest), latest).iloc[0]
    assert row["speedup_source"] == "interleaved"
    assert row["speedup"] == pytest.approx(0.76 / 0.255, rel=0.02)
    assert row["low"] < row["speedup"] < row["high"] and row["low"] > 1.05
    assert row["speedup_verdict"] == "faster"
    # Pays after: the cold compile over what a call saves, from the eager wall time and the speedup.
    saved = 300e-6 * (1 - 1 / row["speedup"])
    assert row["break_even"] == pytest.approx(math.ceil(2.0 / saved), abs=1)
