"""The roofline's ceilings: measured by the suite on the machine, recorded by asv, shown on the page."""

from __future__ import annotations

import pytest
import torch

from linear_impls import asvconf, ceilings, sweep
from linear_impls.report import load_results


def test_peak_and_bandwidth_are_measured_rates():
    torch.set_num_threads(1)
    gflops, n = ceilings.peak_gflops("float32")
    # A real GEMM: its size grew until one call took long enough, a power of two.
    assert gflops > 0.1 and n >= 256 and n & (n - 1) == 0
    assert ceilings.bandwidth_gbs() > 0.1
    # The GEMV a linear layer of one row reaches: float16's fast path on a CPU whose large
    # float16 GEMM is slow, so the peak is the better of the two.
    gemv, m = ceilings.gemv_gflops("float16")
    assert gemv > 0.01 and m == ceilings.GEMV_SIZE["cpu"]


def test_a_case_above_its_roof_is_shown_as_a_ceiling_not_reached(tmp_path):
    from linear_impls import results
    from linear_impls.report import analysis, roofline

    # 1x4096x4096 float16 at 40 GFLOP/s under a 3 GFLOP/s "peak" (a GEMM-only ceiling): 13x its roof.
    # mul_sum runs no GEMM: it cannot say the ceiling's own kernel was faster.
    seconds = 2 * 4096 * 4096 / 40e9
    results.write_file(tmp_path, {"machine": "m"}, "a" * 40, 1, "env", {
        "bench_linear.Inference.time_forward": ([["mul_sum"], ["1x4096x4096", "64x256x256"], ["float16"], ["cpu"]],
                                                [seconds, 1.0]),
        "bench_linear.Ceilings.track_peak_gflops": ([["float16"], ["cpu"]], [3.0]),
        "bench_linear.MemoryBandwidth.track_bandwidth_gbs": ([["cpu"]], [30.0])})
    data = load_results(tmp_path)
    (roof,) = roofline.rooflines(analysis.rates(data.frame), data.ceilings)
    points = roof["points"].set_index("shape")
    assert points.loc["1x4096x4096", "above_roof"] and not points.loc["64x256x256", "above_roof"]


def test_a_case_running_the_ceilings_own_gemm_faster_raises_the_roof_and_says_so(tmp_path):
    """A slow spell during the ceiling's seconds: nn_linear's GEMM (its op trace holds addmm)
    ran at 165 GFLOP/s against a 142 ceiling; einsum's bmm at 170 proves nothing of the GEMM."""
    import pandas as pd

    from linear_impls import results
    from linear_impls.report import analysis, roofline

    flops = 2 * 512 * 1024 * 1024
    results.write_file(tmp_path, {"machine": "m"}, "a" * 40, 1, "env", {
        "bench_linear.Inference.time_forward": (
            [["einsum", "nn_linear"], ["512x1024x1024", "1x4096x4096"], ["float32"], ["cpu"]],
            [flops / 170e9, 2 * 4096**2 / 40e9, flops / 165e9, 2 * 4096**2 / 40e9]),
        "bench_linear.Ceilings.track_peak_gflops": ([["float32"], ["cpu"]], [142.0]),
        "bench_linear.MemoryBandwidth.track_bandwidth_gbs": ([["cpu"]], [50.0])})
    data = load_results(tmp_path)
    rated = analysis.rates(data.frame)
    traces = pd.DataFrame([{"file": f, "impl": i, "shape": s, "dtype": "float32", "device": "cpu", "mode": "forward",
                            "sequence": seq} for f in rated["file"].unique()
                           for i, seq in (("nn_linear", "t, addmm"), ("einsum", "permute, bmm"))
                           for s in ("512x1024x1024", "1x4096x4096")])
    (roof,) = roofline.rooflines(rated, data.ceilings, traces)
    assert roof["peak"] == pytest.approx(165.0)
    assert "nn_linear at 512x1024x1024" in roof["peak_source"] and "142" in roof["peak_source"]
    points = roof["points"].set_index(["impl", "shape"])
    assert points.loc[("nn_linear", "512x1024x1024"), "of_roof"] == pytest.approx(1.0)
    assert points.loc[("einsum", "512x1024x1024"), "of_roof"] == pytest.approx(170 / 165)
    # 1x4096x4096 float32 (64 MiB of weight, beyond every cache) streamed 80 GB/s, over the 50
    # measured: the memory roof.
    assert roof["bandwidth"] == pytest.approx(40e9 / (2 * 4096**2 / (4 * (4096**2 + 2 * 4096 + 4096))) / 1e9,
                                              rel=1e-3)
    assert "streamed" in roof["bandwidth_source"]
    # Without traces only f_linear (what the ceiling itself calls) may raise it: nothing here does.
    (plain,) = roofline.rooflines(rated, data.ceilings)
    assert plain["peak"] == 142.0 and plain["points"]["above_roof"].any()


def test_the_sweep_selects_the_ceilings_in_its_dtypes():
    pattern = asvconf.case_patterns(sweep.SWEEPS["quick"], ["cpu"])["Ceilings"]
    import re

    assert re.match(pattern, "bench_linear.Ceilings.track_peak_gflops('float32', 'cpu')")
    assert not re.match(pattern, "bench_linear.Ceilings.track_peak_gflops('float16', 'cpu')")  # not in quick
    assert re.match(pattern, "bench_linear.MemoryBandwidth.track_bandwidth_gbs('cpu')")


def test_asv_records_them_and_the_page_uses_them(asv_results_dir, tmp_path):
    data = load_results(asv_results_dir)
    got = {(r.dtype, r.device, r.kind) for r in data.ceilings.itertuples()}
    assert {("float32", "cpu", "peak"), ("", "cpu", "bandwidth")} <= got
    assert (data.ceilings["value"] > 0).all()
    from linear_impls.report import build_report

    out = tmp_path / "index.html"
    build_report(asv_results_dir, out)
    page = out.read_text()
    section = page.split('id="peak"')[1].split("<h2")[0]
    assert "measured: the best of a large GEMM and a GEMV" in section and "measured: a streaming triad" in section
    assert "of the roof" in section  # each point's tooltip
