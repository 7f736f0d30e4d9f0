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
