"""The asv suite, run for real: discovery, a short run, check-before-time and faulty implementations.

Speed itself is not asserted here (the machine is shared and noisy): these tests
check that asv records what it should.  Timing figures come from the scripts in
benchmarks/.
"""

from __future__ import annotations

import itertools
import json
import sys

import pytest

from linear_impls import asvconf, instructions, sweep

from .conftest import ASV_FAULTY, ASV_GOOD, ASV_MORE_FAULTY, ASV_SHAPES, ASV_TIMEOUT, ROOT, asv_config, run_asv

pytestmark = pytest.mark.slow


def _results(results_dir):
    files = [p for p in results_dir.glob("*/*.json") if p.name != "machine.json"]
    assert len(files) == 1, files
    data = json.loads(files[0].read_text())
    out = {}
    for name, entry in data["results"].items():
        row = dict(zip(data["result_columns"], entry, strict=False))
        params = [[json.loads(v.replace("'", '"')) for v in axis] for axis in row["params"]]
        for combo, value in zip(itertools.product(*params), row["result"], strict=False):
            out[(name, *combo)] = value
    return data, out


def test_asv_check_passes(tmp_path):
    proc = run_asv(asv_config(tmp_path), "check", "-E", f"existing:{sys.executable}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No problems found" in proc.stdout + proc.stderr


def test_short_run_records_good_cases_and_fails_faulty_ones(asv_run):
    asv_results_dir, proc = asv_run
    data, values = _results(asv_results_dir)
    for impl, shape in itertools.product(ASV_GOOD, ASV_SHAPES):
        for name in ("bench_linear.Inference.time_forward", "bench_linear.Training.time_forward_backward"):
            value = values[(name, impl, shape, "float32", "cpu")]
            assert value is not None and value == value and 1e-7 < value < 1e-2, (name, impl, shape, value)
    for impl, shape in itertools.product(ASV_FAULTY[:2], ASV_SHAPES):
        assert values[("bench_linear.Inference.time_forward", impl, shape, "float32", "cpu")] is None, impl
    assert values[("bench_linear.Inference.time_forward", "faulty_hang", "3x2x3", "float32", "cpu")] is None
    out = proc.stdout + proc.stderr
    assert f"timed out (timeout {ASV_TIMEOUT:g}" in out or f"timed out (timeout {ASV_TIMEOUT}" in out
    assert "exit status" in out or "SIGABRT" in out or "signal 6" in out  # the abort
    # Gate before time: the gate's reason is in the log, so the case was never timed.
    assert "CheckFailed" in out and "faulty_dropped_bias" in out and "forward check failed" in out
    # Not selected (cuda, other shapes) stays n/a, not failed.
    assert values[("bench_linear.Inference.time_forward", "f_linear", "3x2x3", "float32", "cuda")] != \
        values[("bench_linear.Inference.time_forward", "f_linear", "3x2x3", "float32", "cuda")]
    assert values[("bench_linear.Environment.track_threads",)] == 2  # pinned by $LINBENCH_THREADS, recorded
    # The matmul precision every case ran under, pinned and recorded; no GPU here to record.
    assert values[("bench_linear.EnvironmentPrecision.track_tf32",)] == 0
    assert values[("bench_linear.EnvironmentPrecision.track_reduced_precision_reduction",)] == 0
    # The cache's roof is CUDA's: n/a here, never a failed case.
    assert values[("bench_linear.CacheBandwidth.track_cache_bandwidth_gbs", "cpu")] != \
        values[("bench_linear.CacheBandwidth.track_cache_bandwidth_gbs", "cpu")]
    capability = values[("bench_linear.EnvironmentGpu.track_cuda_capability",)]
    assert capability != capability  # n/a (NaN), not failed (None)



@pytest.mark.parametrize("impl", sorted(ASV_MORE_FAULTY))
def test_each_fault_fails_its_case_with_the_reason_in_the_log(asv_run, impl):
    asv_results_dir, proc = asv_run
    _data, values = _results(asv_results_dir)
    assert values[("bench_linear.Inference.time_forward", impl, "3x2x3", "float32", "cpu")] is None
    assert ASV_MORE_FAULTY[impl] in proc.stdout + proc.stderr


def test_many_calls_per_sample(asv_results_dir):
    """The asv_runner trap: with a setup, asv timed one call per sample.  Ours batches."""
    files = [p for p in asv_results_dir.glob("*/*.json") if p.name != "machine.json"]
    data = json.loads(files[0].read_text())
    row = dict(zip(data["result_columns"], data["results"]["bench_linear.Inference.time_forward"], strict=False))
    numbers = [n for n in row["stats_number"] if n]
    assert numbers and min(numbers) > 10, numbers


_TIMED_CALLABLE = """
import functools, sys
sys.path.insert(0, sys.argv[1])
import bench_linear as bl
from asv_runner.benchmarks.time import TimeBenchmark
for cls, name in ((bl.Inference, "time_forward"), (bl.Training, "time_forward_backward")):
    inst = cls()
    params = ("f_linear", "3x2x3", "float32", "cpu")
    b = TimeBenchmark(f"bench_linear.{cls.__name__}.{name}", getattr(inst, name), [inst, cls, bl])
    inst.setup(*params)
    timed = b._param_bound_func(*params)
    assert timed is inst.step, (cls.__name__, timed)
    timed()
class Other:
    def time_x(self, n):
        pass
o = Other()
timed = TimeBenchmark("m.Other.time_x", o.time_x, [o])._param_bound_func(3)
assert isinstance(timed, functools.partial) and timed.args == (3,), timed
print("ok")
"""


def test_asv_times_the_prepared_step_itself(tmp_path):
    """What torch's Timer times: asv's wrapper frames cost 5-6% of a 4-9 us case."""
    import subprocess

    from .conftest import ROOT

    # A file, not -c: asv_runner reads each benchmark's source.  A fresh process, because
    # importing the suite pins torch's threads and malloc for the whole process.
    script = tmp_path / "check_timed.py"
    script.write_text(_TIMED_CALLABLE)
    proc = subprocess.run([sys.executable, str(script), str(ROOT / "benchmarks")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_regex_selects_exactly_the_sweep():
    import re

    pats = [re.compile(p) for p in asvconf.all_patterns(sweep.SWEEPS["quick"], ["cpu"])]

    def selected(name):
        return any(p.search(name) for p in pats)

    assert selected("bench_linear.Inference.time_forward('f_linear', '64x256x256', 'float32', 'cpu')")
    assert not selected("bench_linear.Inference.time_forward('f_linear', '64x256x256', 'float32', 'cuda')")
    assert not selected("bench_linear.Inference.time_forward('f_linear', '512x1024x1024', 'float32', 'cpu')")
    assert not selected("bench_linear.HostMemory.peakmem_step('f_linear', '64x256x256', 'float32', 'forward')")


@pytest.mark.skipif(instructions.unavailable_reason() is not None, reason=str(instructions.unavailable_reason()))
def test_instructions_and_ratio_are_recorded_by_asv(tmp_path):
    """One valgrind process (setup_cache) counts f_linear's quick cases; asv records each, n/a elsewhere."""
    import subprocess

    config = asv_config(tmp_path)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(ROOT), capture_output=True, text=True,
                          check=True).stdout.strip()
    run_asv(config, "machine", "--yes", "--machine", "linbench-test")
    proc = run_asv(config, "run", "-E", f"existing:{sys.executable}", "--set-commit-hash", head,
                   "--machine", "linbench-test", "--show-stderr",
                   "-b", r"^bench_linear\.Instructions\.\w+\('(?:f_linear|nn_linear)', '(?:1x8x8|64x256x256)', "
                         r"'float32', '(?:cpu|cuda)'",
                   "-b", r"^bench_linear\.RelativeToTorch\.\w+\('f_linear', '1x8x8', 'float32', 'cpu', 'forward'\)",
                   env_extra={instructions.SELECT_ENV: "'f_linear'"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _data, values = _results(tmp_path / "results")
    name = "bench_linear.Instructions.track_instructions"
    small = values[(name, "f_linear", "1x8x8", "float32", "cpu", "forward")]
    big = values[(name, "f_linear", "64x256x256", "float32", "cpu", "forward")]
    train = values[(name, "f_linear", "64x256x256", "float32", "cpu", "forward_backward")]
    assert 5_000 < small < big < train, (small, big, train)
    # A 64x256x256 float32 GEMM is 8.4 MFLOP: hundreds of thousands of AVX2 instructions at least.
    assert big > 300_000
    for skipped in (("f_linear", "1x8x8", "float32", "cuda", "forward"), ("nn_linear", "1x8x8", "float32", "cpu",
                                                                          "forward")):
        v = values[(name, *skipped)]
        assert v is not None and v != v, (skipped, v)  # n/a, not failed
    out = proc.stdout + proc.stderr
    assert "instructions are counted on the CPU only" in out
    assert "not counted: $LINBENCH_INSTRUCTIONS_SELECT" in out and "leaves it out" in out
    ratio = values[("bench_linear.RelativeToTorch.track_ratio", "f_linear", "1x8x8", "float32", "cpu", "forward")]
    assert 0.5 < ratio < 2, ratio  # F.linear against torch's own F.linear
