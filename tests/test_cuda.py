"""CUDA paths: checks on the device, the synchronizing clock, device memory tracking.

Skipped on machines without CUDA (this project's CI); run them where a GPU is lent.
"""

from __future__ import annotations

import pytest
import torch

import linear_impls
from linear_impls import bench, checks, sweep

pytestmark = pytest.mark.skipif("cuda" not in sweep.available_devices(), reason="no CUDA device here")


@pytest.mark.parametrize("impl", linear_impls.names())
def test_gates_pass_on_cuda(impl):
    results = checks.run_all(linear_impls.get(impl), ["cuda"])
    bad = [f"{r.case}/{r.dtype}/{r.check}: {r.reason}" for r in results if r.status == "fail"]
    assert not bad, bad[:5]


def test_tf32_fails_the_float32_gate():
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


def test_prepare_on_cuda_and_memory_tracking():
    case = bench.prepare("nn_linear", "8x128x768x3072", "float16", "cuda", "forward_backward")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    case.step()
    torch.cuda.synchronize()
    shape = sweep.parse_shape("8x128x768x3072")
    assert torch.cuda.max_memory_allocated() >= shape.tensor_bytes(2, "forward")
