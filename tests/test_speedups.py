"""The first screen's speedups: interleaved with the baseline, intervals over processes
widened by the null control, and the verdict; the wall-time quotient only where no
interleaved speedup was recorded.  Hand-made asv results, read by the real loader."""

from __future__ import annotations

import math

import pytest

from linear_impls import bench, results
from linear_impls.report import analysis, load_results
from linear_impls.report.load import process_spread

MACHINE = {"machine": "m", "cpu": "test cpu"}
ENV = "virtualenv-py3.11-torch2.13.0"
N = bench.SPEEDUP_BLOCKS


def two_processes(first: float, second: float) -> dict:
    samples = [first] * N + [second] * N
    return {"result": (first + second) / 2, "samples": samples, "number": 1, "repeat": len(samples)}


def write(tmp_path, speedups: dict[str, tuple[float, float]] | None, commit="a" * 40):
    impls = ["nn_linear", "f_linear", "twice", "faster", "noisy"]
    # Wall times that say the opposite of the speedups: a separate-process quotient is not trusted.
    times = {"nn_linear": 10e-6, "f_linear": 5e-6, "twice": 5e-6, "faster": 20e-6, "noisy": 10e-6}
    benchmarks = {"bench_linear.Inference.time_forward": ([impls, ["64x256x256"], ["float32"], ["cpu"]],
                                                          [times[i] for i in impls])}
    if speedups is not None:
        benchmarks["bench_linear.Speedup.track_speedup"] = (
            [impls, ["64x256x256"], ["float32"], ["cpu"], ["forward"]], [two_processes(*speedups[i]) for i in impls])
    results.write_file(tmp_path, MACHINE, commit, 1, ENV, benchmarks)


def rated(tmp_path):
    data = load_results(tmp_path)
    return analysis.rates(data.frame).set_index("impl")


def test_process_spread_splits_samples_by_process():
    assert process_spread([1.0] * N + [2.0] * N, N) == (1.0, 2.0)
    assert process_spread([1.0] * N, N) == (None, None)  # one process: no spread between processes
    assert process_spread([1.0] * (N + 1), N) == (None, None)  # not whole processes: not split
    assert process_spread(None, N) == (None, None)


def test_interleaved_speedups_decide_the_verdict(tmp_path):
    write(tmp_path, {"nn_linear": (0.99, 1.01), "f_linear": (0.97, 0.98), "twice": (0.49, 0.51),
                     "faster": (1.30, 1.35), "noisy": (0.85, 1.20)})
    t = rated(tmp_path)
    assert set(t["speedup_source"]) == {"interleaved"}
    assert t.loc["twice", "speedup_verdict"] == "slower"
    assert t.loc["twice", "speedup"] == pytest.approx(0.50)
    # The interval: the processes' lowest and highest, widened by the null control's widest
    # miss of 1 (0.99: 1/0.99 is the wider of it and 1.01).
    assert t.loc["twice", "low"] == pytest.approx(0.49 * 0.99)
    assert t.loc["twice", "high"] == pytest.approx(0.51 / 0.99)
    assert t.loc["faster", "speedup_verdict"] == "faster"
    # The same kernel reads the same: within the factor, whatever its interval.
    assert t.loc["f_linear", "speedup_verdict"] == "same"
    assert t.loc["noisy", "speedup_verdict"] == "same"  # its interval includes 1
    assert t.loc["nn_linear", "speedup_verdict"] == "same"
    noise = analysis.within_noise(t.reset_index()).to_numpy()
    assert list(noise) == [False, True, False, False, True]  # never the baseline's own row
    # The fastest is decided by the speedup, not by the wall times (which favour f_linear and twice).
    assert t.index[t["best"]].tolist() == ["faster"]


def test_a_wide_null_control_widens_every_interval_of_its_case(tmp_path):
    write(tmp_path, {"nn_linear": (0.75, 1.25), "f_linear": (0.97, 0.98), "twice": (0.49, 0.51),
                     "faster": (1.30, 1.35), "noisy": (0.85, 1.20)})
    t = rated(tmp_path)
    assert t.loc["faster", "low"] == pytest.approx(1.30 * 0.75)
    assert t.loc["faster", "speedup_verdict"] == "same"  # 1.3x is inside this case's noise
    assert t.loc["twice", "speedup_verdict"] == "slower"  # 0.5x is not


def test_without_interleaved_speedups_the_wall_time_quotient_stays_and_says_so(tmp_path):
    write(tmp_path, None)
    t = rated(tmp_path)
    assert set(t["speedup_source"]) == {"wall time"}
    assert t.loc["f_linear", "speedup"] == pytest.approx(2.0)
    assert set(t["speedup_verdict"]) == {""}
    assert all(math.isnan(v) for v in t["low"])
