"""The roofline's ceilings: measured by the suite on the machine, recorded by asv, shown on the page."""

from __future__ import annotations

import torch

from linear_impls import bench, ceilings, sweep
from linear_impls.report import load_results


def test_peak_and_bandwidth_are_measured_rates():
    torch.set_num_threads(1)
    gflops, n = ceilings.peak_gflops("float32")
    # A real GEMM: its size grew until one call took long enough, a power of two.
    assert gflops > 0.1 and n >= 256 and n & (n - 1) == 0
    assert ceilings.bandwidth_gbs() > 0.1


def test_the_sweep_selects_the_ceilings_in_its_dtypes():
    pattern = bench.asv_patterns(sweep.SWEEPS["quick"], ["cpu"])["Ceilings"]
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
    assert "measured: a large GEMM" in section and "measured: a streaming triad" in section
    assert "of the roof" in section  # each point's tooltip
