"""The CUDA paths' logic, on any machine: what a CPU can run of each fix that readies them for
their first GPU (tests/test_cuda.py and benchmarks/gpu_proof.sh prove the rest on one).

Where a test needs a GPU's answer (free device memory, "is CUDA usable"), it states it the way
linbench itself receives it ($LINBENCH_CUDA, a free-memory figure), never by faking torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import linear_impls
from linear_impls import asvconf, bench, checks, compiled, gpu, supervise, sweep
from linear_impls.report import roofline

from .conftest import run_linbench

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30


@pytest.fixture
def cuda_says(monkeypatch):
    """State what the CUDA probe found, as linbench passes it to its children."""

    def say(value: str):
        monkeypatch.setenv(gpu.CUDA_ENV, value)

    return say


# --- 1: a call's own device memory ------------------------------------------------------------


class Allocator:
    """Counts bytes as a caching allocator reports them: allocated now, and the peak since a reset."""

    def __init__(self, resident: int):
        self.now = self.top = resident

    def alloc(self, n: int) -> None:
        self.now += n
        self.top = max(self.top, self.now)

    def free(self, n: int) -> None:
        self.now -= n


def test_call_memory_is_the_calls_own_peak_not_the_resident_tensors():
    mem = Allocator(resident=300 * 2**20)  # x, W, b and a 32 MiB cuBLAS workspace, allocated before

    def step():  # a temporary of 8 MiB, then an output of 1 MiB that the call returns and drops
        mem.alloc(8 * 2**20)
        mem.alloc(2**20)
        mem.free(8 * 2**20)
        mem.free(2**20)

    got = gpu.call_peak_bytes(step, synchronize=lambda: None, allocated=lambda: mem.now,
                              reset_peak=lambda: setattr(mem, "top", mem.now), peak=lambda: mem.top)
    assert got == 9 * 2**20


def _bench_linear(snippet: str) -> str:
    """Run ``snippet`` after importing the asv suite in a fresh process (it patches asv_runner)."""
    code = f"import sys\nsys.path.insert(0, {str(ROOT / 'benchmarks')!r})\nimport bench_linear as bl\n{snippet}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, LINBENCH_SWEEP="default"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_device_memory_keeps_to_the_sweeps_memory_dtypes():
    out = _bench_linear(
        "try:\n    bl.DeviceMemory().setup('f_linear', '1x8x8', 'float64', 'forward')\n"
        "except NotImplementedError as exc:\n    print('n/a:', exc)\n")
    assert "n/a: float64: memory is measured in ('float32',)" in out


# --- 3, 4: precision pinned, recorded, in the check cache's key; the GPU recorded ------------


def test_precision_flags_are_pinned_and_change_the_check_cache_key(monkeypatch, tmp_path):
    monkeypatch.setenv(bench.CHECK_CACHE_ENV, str(tmp_path))
    impl, shape = linear_impls.get("f_linear"), sweep.parse_shape("1x8x8")
    old = gpu.precision_flags()
    try:
        gpu.pin_precision()
        assert gpu.precision_flags() == gpu.PINNED
        assert gpu.reduced_precision() == {"tf32": 0, "reduced_precision_reduction": 0}
        pinned_key = bench._check_cache_file(impl, shape, "float16", "cpu", "forward")
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = True
        torch.set_float32_matmul_precision("high")
        assert gpu.reduced_precision() == {"tf32": 1, "reduced_precision_reduction": 1}
        assert bench._check_cache_file(impl, shape, "float16", "cpu", "forward") != pinned_key
    finally:
        torch.set_float32_matmul_precision(old["float32_matmul_precision"])
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = \
            old["cuda.matmul.allow_fp16_reduced_precision_reduction"]


def test_environment_records_the_flags_and_no_gpu_here():
    out = _bench_linear(
        "e = bl.EnvironmentPrecision()\ne.setup()\n"
        "print('flags', e.track_tf32(), e.track_reduced_precision_reduction())\n"
        "try:\n    bl.EnvironmentGpu().setup()\nexcept NotImplementedError as exc:\n    print('gpu n/a:', exc)\n")
    assert "flags 0 0" in out  # pinned in every case's process at import
    assert "gpu n/a: no CUDA device here" in out  # asv: n/a (skipped in setup), never failed


def test_page_shows_the_gpu_and_the_precision_it_ran_under():
    from linear_impls.report import render

    f = pd.Series({"cuda_capability": "9", "cuda_multiprocessors": "132", "cuda_memory_gib": "79.1",
                   "cuda_runtime": "12.8", "cuda_driver": "12080", "tf32": "0", "reduced_precision_reduction": "0"})
    assert render._gpu_text(f) == "sm 9, 132 SMs, 79.1 GiB, CUDA 12.8, driver API 12.8"
    assert render._precision_text(f) == "full float32, float32 partial sums"
    assert render._gpu_text(pd.Series({"cuda_capability": ""})) == ""


# --- 6: is CUDA usable, decided without touching it here -----------------------------------------


def test_cuda_availability_is_decided_once_and_inherited(monkeypatch, cuda_says):
    monkeypatch.delenv(gpu.CUDA_ENV, raising=False)
    reason = gpu.cuda_unavailable_reason()
    assert reason and "without CUDA" in reason  # this CPU build of torch
    assert os.environ[gpu.CUDA_ENV].startswith("0: ")  # what every child inherits
    cuda_says("0: CUDA does not start: driver too old")
    assert sweep.device_unavailable_reason("cuda") == "CUDA does not start: driver too old"
    assert sweep.available_devices() == ["cpu"]
    cuda_says("1")
    assert sweep.available_devices() == ["cpu", "cuda"]


def test_the_probe_runs_cuda_in_a_child_and_says_why_not():
    # The child process tries one kernel; this process never initialises CUDA.
    reason = gpu._probe_in_child()
    assert reason and reason.startswith("CUDA does not start:"), reason
    assert not torch.cuda.is_initialized()


def test_the_asv_suite_never_asks_torch_cuda_at_import():
    # benchmarks/__init__ sets the NVML check before torch is imported; compare_timer imports
    # torch.utils.benchmark (which asks torch.cuda.is_available()) only when run.
    text = (ROOT / "benchmarks" / "compare_timer.py").read_text()
    assert "\nimport torch.utils.benchmark" not in text
    assert "PYTORCH_NVML_BASED_CUDA_CHECK" in (ROOT / "benchmarks" / "__init__.py").read_text()


# --- 7, 8: out of device memory is n/a; budgets per device; estimates per dtype -----------------


def test_out_of_device_memory_is_na_not_a_failed_check(planted):
    def gpu_too_small(weight, bias):
        def forward(x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

        return forward

    impl = planted("gpu_too_small", gpu_too_small)
    res = checks.run_check(impl, checks.CASES[1], "float32", "cpu", "forward")
    assert res.status == "skip" and "out of cpu memory: CUDA out of memory" in res.reason, res
    with pytest.raises(bench.CaseSkipped, match="out of cpu memory"):
        bench.check_case(impl, sweep.parse_shape("1x8x8"), "float32", "cpu", "forward")


def test_cuda_cases_budget_the_device_and_the_hosts_reference_apart(cuda_says):
    cuda_says("1")
    f_linear, shape = linear_impls.get("f_linear"), sweep.parse_shape("16x512x4096x4096")
    full = sweep.SWEEPS["full"]
    need = sweep.memory_needs(shape, "float16", "cuda", "forward_backward")
    # float16 tensors on the GPU; the float64 reference, and the results copied to compare, on the CPU.
    assert need["cuda"] == shape.tensor_bytes(2, "forward_backward")
    assert need["cpu"] == 2 * shape.tensor_bytes(8, "forward_backward") > 4 * need["cuda"]
    host_small = sweep.skip_reason(f_linear, shape, "float16", "cuda", "forward_backward", full,
                                   free_bytes={"cuda": 80 * GIB, "cpu": 2 * GIB})
    assert host_small and "float64 reference" in host_small and "free on cpu" in host_small
    gpu_small = sweep.skip_reason(f_linear, shape, "float16", "cuda", "forward_backward", full,
                                  free_bytes={"cuda": GIB // 4, "cpu": 64 * GIB})
    assert gpu_small and gpu_small.startswith("the case need") and "free on cuda" in gpu_small
    assert sweep.skip_reason(f_linear, shape, "float16", "cuda", "forward_backward", full,
                             free_bytes={"cuda": 80 * GIB, "cpu": 64 * GIB}) is None


def test_cuda_estimates_follow_the_dtype_and_the_reference_has_a_budget(cuda_says):
    cuda_says("1")
    shape = sweep.parse_shape("4096x4096x4096")
    f64 = sweep.estimated_seconds(shape, "float64", "cuda", "forward")
    f32 = sweep.estimated_seconds(shape, "float32", "cuda", "forward")
    f16 = sweep.estimated_seconds(shape, "float16", "cuda", "forward")
    assert f64 > 20 * f32 > 20 * f16 / 5
    huge = dataclasses.replace(sweep.SWEEPS["full"], shapes=("64x1024x8192x8192",), max_call_seconds=60.0)
    reason = sweep.skip_reason(linear_impls.get("f_linear"), sweep.parse_shape("64x1024x8192x8192"), "float16",
                               "cuda", "forward_backward", huge, free_bytes={"cuda": 10**15, "cpu": 10**15})
    assert reason and "float64 reference on the CPU would take" in reason


# --- 9: a case in the GPU's L2 has the L2's roof --------------------------------------------------


def test_roofline_gives_cache_resident_cases_the_caches_bandwidth():
    rated = pd.DataFrame([
        {"file": 0, "machine": "m", "env": "e", "device": "cuda", "dtype": "float16", "mode": "forward",
         "status": "ok", "impl": "f_linear", "shape": shape, "gflops": gflops}
        for shape, gflops in (("1x4096x4096", 9000.0), ("16x512x4096x4096", 500_000.0))])
    ceilings = pd.DataFrame([
        {"file": 0, "dtype": "float16", "device": "cuda", "kind": "peak", "value": 700_000.0},
        {"file": 0, "dtype": "", "device": "cuda", "kind": "bandwidth", "value": 3000.0},
        {"file": 0, "dtype": "", "device": "cuda", "kind": "cache_bandwidth", "value": 9000.0},
        {"file": 0, "dtype": "", "device": "cuda", "kind": "cache_bytes", "value": 50e6}])
    (block,) = roofline.rooflines(rated, ceilings)
    points = block["points"].set_index("shape")
    gemv = points.loc["1x4096x4096"]
    # A 32 MiB float16 weight in a 50 MB L2: 9 TFLOP/s at ~1 FLOP/byte is 3x an HBM roof, under the L2's.
    assert gemv["roof"] == pytest.approx(9000.0 * gemv["ai"]) and not gemv["above_roof"]
    big = points.loc["16x512x4096x4096"]
    assert big["roof"] == pytest.approx(min(700_000.0, 3000.0 * big["ai"]))
    assert block["n_in_cache"] == 1


# --- 10, 2: the GPU runner runs the device's cases alone; no CUDA is an error there ---------------


def test_a_cuda_run_selects_no_cpu_work_and_no_cuda_run_here_is_exit_2():
    patterns = asvconf.case_patterns(sweep.SWEEPS["default"], devices=["cuda"])
    assert "Instructions" not in patterns and "HostMemory" not in patterns and "DeviceMemory" in patterns
    assert all("'cpu'" not in p for p in patterns.values())
    for args in (("run", "--device", "cuda"), ("check", "--device", "cuda")):
        proc = run_linbench(*args)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and "not available on this machine" in lines[0], proc.stderr


def test_make_cuda_visible_fails_in_one_line_without_cuda():
    proc = subprocess.run(["make", "-s", "-C", str(ROOT), "cuda-visible"], capture_output=True, text=True,
                          env=dict(os.environ, MAKEFLAGS=""))
    assert proc.returncode != 0 and "CUDA is not visible here:" in proc.stdout, proc.stdout + proc.stderr


def test_gpu_proof_says_in_one_line_that_it_needs_a_gpu():
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_proof.sh")], capture_output=True, text=True,
                          env=dict(os.environ, PATH="/usr/bin:/bin"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "needs an NVIDIA GPU" in proc.stderr


# --- 11: the memory limit leaves reserved address space alone ---------------------------------------

_RESERVE = """
import mmap, sys
reserved = mmap.mmap(-1, 64 << 30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=0)  # PROT_NONE
print("reserved 64 GiB")
try:
    data = bytearray(4 << 30)
    print("allocated 4 GiB")
except MemoryError:
    print("4 GiB refused")
"""


def test_memory_limit_counts_allocations_not_reserved_address_space():
    # A CUDA context reserves tens of GiB of address space; the limit must let that through and
    # still refuse memory actually allocated past it.
    proc = subprocess.run([sys.executable, "-c", _RESERVE], capture_output=True, text=True, timeout=60,
                          preexec_fn=supervise.limit_memory(2 * GIB))
    assert "reserved 64 GiB" in proc.stdout and "4 GiB refused" in proc.stdout, proc.stdout + proc.stderr


# --- 12, 5: compiled variants on CUDA ---------------------------------------------------------------


def test_compiled_variants_need_triton_on_cuda_and_cuda_graphs_run_on_cuda_only():
    import importlib.util

    missing = compiled.compiler_missing("cuda")
    assert (missing is not None) == (importlib.util.find_spec("triton") is None)
    if missing:
        assert "no triton" in missing
    ro = compiled.register_compiled("f_linear", "reduce-overhead")
    assert compiled.explain_device(ro, ["cpu"]) is None
    assert compiled.explain_device(compiled.register_compiled("f_linear"), ["cpu"]) == "cpu"
    cpu_only = asvconf.case_patterns(sweep.SWEEPS["default"], devices=["cpu"])["Compiled"]
    with_cuda = asvconf.case_patterns(sweep.SWEEPS["default"], devices=["cpu", "cuda"])["Compiled"]
    name = "bench_linear.Inference.time_forward('compiled_ro_f_linear', '1x64x64', 'float32', 'cuda')"
    assert not re.search(cpu_only, name.replace("cuda", "cpu")) and re.search(with_cuda, name)
    # The asv suite lists the CUDA-graph variants whatever the machine, so params never depend on it.
    out = _bench_linear("print(sorted(i for i in bl.IMPLS if i.startswith('compiled_ro_')))")
    assert "compiled_ro_f_linear" in out


def test_the_compiler_is_loaded_per_device():
    compiled._load_compiler("cpu")
    assert "cpu" in compiled._COMPILER_LOADED and "cuda" not in compiled._COMPILER_LOADED


# --- 13: the block size is estimated without a synchronisation per call ----------------------------


def test_calls_per_block_reads_the_clock_per_batch_not_per_call():
    out = _bench_linear(
        "import time, json\n"
        "reads = [0]\ncalls = [0]\n"
        "def clock():\n    reads[0] += 1\n    return time.perf_counter()\n"
        "def step():\n    calls[0] += 1\n    t = time.perf_counter()\n    while time.perf_counter() - t < 1e-4: pass\n"
        "n = bl._calls_per_block(step, step, 2e-3, clock)\n"
        "print(json.dumps({'n': n, 'reads': reads[0], 'calls': calls[0]}))\n")
    got = json.loads(out.strip().splitlines()[-1])
    assert got["calls"] > 100 and got["reads"] <= 3 * 12, got  # ~3 reads per doubling, not one per call
    assert 8 <= got["n"] <= 25, got  # ~2 ms of 0.1 ms calls
