"""CUDA paths: checks on the device, the synchronizing clock, a call's own device memory, the
pinned precision, the GPU's facts.

Skipped on machines without CUDA (this project's CI), unless ``$LINBENCH_REQUIRE_CUDA`` is set
(``make test-cuda``, the GPU runner's job): there, no CUDA is an error, never a green skip.
Their logic is tested on the CPU in tests/test_cuda_logic.py.
"""

from __future__ import annotations

import os

import pytest
import torch

import linear_impls
from linear_impls import bench, checks, gpu, sweep

if "cuda" not in sweep.available_devices() and os.environ.get("LINBENCH_REQUIRE_CUDA"):
    pytest.fail(f"$LINBENCH_REQUIRE_CUDA is set but CUDA is not usable here: {sweep.device_unavailable_reason('cuda')}",
                pytrace=False)
pytestmark = pytest.mark.skipif("cuda" not in sweep.available_devices(), reason="no CUDA device here")


@pytest.mark.parametrize("impl", linear_impls.names())
def test_gates_pass_on_cuda(impl):
    results = checks.run_all(linear_impls.get(impl), ["cuda"])
    bad = [f"{r.case}/{r.dtype}/{r.check}: {r.reason}" for r in results if r.status == "fail"]
    assert not bad, bad[:5]


def test_tf32_fails_the_float32_check():
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        results = checks.run_all(linear_impls.get("f_linear"), ["cuda"], dtypes=("float32",))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    assert any(r.status == "fail" for r in results), "TF32 precision passed the float32 check"


def test_sync_clock_includes_queued_kernels():
    case = bench.prepare("f_linear", "64x256x256", "float32", "cuda", "forward", check=False)
    t0 = bench.sync_clock()
    for _ in range(50):
        case.step()
    t1 = bench.sync_clock()
    assert torch.cuda.is_initialized() and t1 > t0
    # Nothing left queued once the clock has been read.
    assert torch.cuda.current_stream().query()


def test_call_memory_counts_the_call_not_the_resident_tensors():
    shape = sweep.parse_shape("8x128x768x3072")
    case = bench.prepare("nn_linear", shape.id, "float16", "cuda", "forward_backward")
    own = gpu.call_peak_bytes(case.step)
    # A training step allocates y, dX, dW and db afresh; x, W, b, gy and cuBLAS's workspaces
    # (32 MiB and more, made by prepare's first call) were there before it.
    assert own >= shape.tensor_bytes(2, "forward"), own
    assert own < 2 * shape.tensor_bytes(2, "forward") + 8 * 2**20, (own, torch.cuda.memory_allocated())
    f_linear = gpu.call_peak_bytes(bench.prepare("f_linear", "64x256x256", "float32", "cuda", "forward").step)
    mul_sum = gpu.call_peak_bytes(bench.prepare("mul_sum", "64x256x256", "float32", "cuda", "forward").step)
    # mul_sum materialises its (64, 256, 256) product; F.linear allocates its output alone.
    assert mul_sum >= 64 * 256 * 256 * 4 > 10 * f_linear, (mul_sum, f_linear)


def test_precision_is_pinned_and_recorded():
    gpu.pin_precision()
    assert gpu.reduced_precision() == {"tf32": 0, "reduced_precision_reduction": 0}
    facts = gpu.device_facts()
    assert facts["capability"] >= 3.0 and facts["multiprocessors"] > 0 and facts["memory_gib"] > 1


def test_the_op_trace_names_the_kernels_each_op_launched():
    from linear_impls import dispatch

    t = dispatch.trace("f_linear", "64x256x256", "float32", "cuda", "forward_backward")
    mm = [o for o in t.ops if o.short in ("addmm", "mm")]
    assert mm and all(o.kernels for o in mm), [(o.op, o.kernels) for o in t.ops]
    assert "kernel:" in dispatch.format_trace(t)
