"""Preparing one benchmark case: inputs, the correctness check, and the closure that is timed.

Shared by the asv suite (``benchmarks/``), the pytest-benchmark quick gate and the
timer-agreement script, so all of them time exactly the same thing.
"""

from __future__ import annotations

import ctypes
import hashlib
import inspect
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import checks, compiled, envvars, gpu, registry, sweep


class CaseSkipped(NotImplementedError):
    """The case cannot or should not run here (asv shows it as n/a)."""


class CheckFailed(RuntimeError):
    """The implementation's correctness check failed: the case is never timed."""


@dataclass
class PreparedCase:
    impl: str
    shape: sweep.Shape
    dtype: str
    device: str
    mode: str
    step: Callable[[], object]  # one forward, or one forward + backward

    @property
    def flops(self) -> int:
        return self.shape.flops(self.mode)


def steady_allocator() -> bool:
    """Fix glibc malloc's mmap and trim thresholds for this process and its forks.

    glibc moves its mmap threshold as a process frees large blocks, so whether an
    implementation's big temporaries come from the heap or from fresh mmaps (a page
    fault per 4 KiB, every call) depends on what the process did before.  Measured
    here: mul_sum's 64x256x256 training step ran 10 times F.linear's time in most
    fresh processes and 26-28 times in one of three; with the thresholds fixed, 8 of 8
    processes gave 9.1-10.9.  A fixed threshold is a long-running loop's steady state.
    Returns False where there is no glibc (nothing to fix).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from malloc.h
    # 32 MiB is the largest mmap threshold glibc accepts on 64-bit; setting it also
    # turns the dynamic adjustment off.  Freed memory stays with the process.
    return bool(mallopt(m_mmap_threshold, 32 * 2**20)) and bool(mallopt(m_trim_threshold, 2**30))


def sync_clock() -> float:
    """``time.perf_counter`` after waiting for queued CUDA work, as torch.utils.benchmark does.

    Only a process that already uses CUDA pays for the synchronize, and it never
    creates a CUDA context itself.
    """
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


CHECK_CACHE_ENV = envvars.CHECK_CACHE


def _check_cache_file(impl: registry.Impl, shape: sweep.Shape, dtype: str, device: str, check: str) -> Path | None:
    """Where a check outcome is remembered, keyed by everything it depends on.

    asv runs each case in several benchmarks and two modes, each a fresh process: without
    this, the float64 reference of a large case (seconds) is recomputed four times.
    The key holds the source of the implementation's module and of the checks, torch's
    version and its matmul precision flags, and on CUDA the GPU, its driver and the CUDA
    runtime, so a change to any of them re-checks.
    """
    # LINBENCH_GATE_CACHE: the variable's name before correctness was called "check" everywhere.
    root = os.environ.get(CHECK_CACHE_ENV) or os.environ.get(envvars.GATE_CACHE) \
        or str(Path.home() / ".cache" / "linbench" / "checks")
    if root in ("", "0", "off"):
        return None
    modules = [sys.modules.get(n) for n in impl.source_modules()]
    try:
        sources = [*(inspect.getsource(m) if m else inspect.getsource(impl.factory) for m in modules),
                   inspect.getsource(checks)]
    except (OSError, TypeError):
        return None  # no source to key on (an interactive registration): always check
    key = hashlib.sha256("\0".join([*sources, torch.__version__, *gpu.cache_key_parts(device), impl.name, shape.id,
                                    dtype, device, check]).encode()).hexdigest()
    return Path(root) / f"{key}.json"


def check_case(impl: registry.Impl, shape: sweep.Shape, dtype: str, device: str, mode: str) -> None:
    """Run the check on the benchmark's own shape: forward, or backward (which checks the output too)."""
    check = "forward" if mode == "forward" else "backward"
    cache = _check_cache_file(impl, shape, dtype, device, check)
    if cache is not None and cache.is_file():
        try:
            saved = json.loads(cache.read_text())
        except (OSError, ValueError):
            saved = None
        if isinstance(saved, dict) and saved.get("status") == "pass":
            return
    # The benchmark's own shape: its values, not the parameter updates (linbench check runs
    # those on small cases; here they would multiply the float64 reference's cost by four).
    res = checks.run_check(impl, checks.case_for_shape(shape), dtype, device, check, n_inputs=1,
                          changing_parameters=False)
    if res.status == "skip":  # the device ran out of memory: n/a with the reason, never timed
        raise CaseSkipped(f"{impl.name} {shape.id} {dtype} {device}: {check} check: {res.reason}")
    if res.status == "fail":
        raise CheckFailed(f"{impl.name} {shape.id} {dtype} {device}: {check} check failed: {res.reason}")
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(res.to_dict()))
            tmp.replace(cache)
        except OSError:
            pass  # a read-only home: gating every time is slower, not wrong


def prepare(impl_name: str, shape_id: str, dtype: str, device: str, mode: str, *,
            check: bool = True, sweep_def: sweep.Sweep | None = None, seed: int = 0) -> PreparedCase:
    """Everything a timed call needs, made once; raises CaseSkipped or CheckFailed.

    A compiled variant is compiled here, by the first call, and its timed calls may not
    recompile (``compiled.steady``): what is timed is its steady state.
    """
    impl = registry.get(impl_name)
    shape = sweep.parse_shape(shape_id)
    reason = sweep.skip_reason(impl, shape, dtype, device, mode, sweep_def)
    if reason:
        raise CaseSkipped(reason)
    if check:
        check_case(impl, shape, dtype, device, mode)
    step = build_step(impl, shape, dtype, device, mode, seed)
    step()  # first call: lazy initialisation (kernels, allocator, compilation) stays out of the timings
    if device == "cuda":
        torch.cuda.synchronize()
    if compiled.is_compiled(impl_name):
        compiled.steady()
    return PreparedCase(impl_name, shape, dtype, device, mode, step)


# A larger tensor of a timed case repeats one random block of this many values: torch's CPU
# generator draws on one thread (0.1 s for a 4096x4096 weight, paid twice by each speedup
# process of the case), and no kernel's time depends on which finite values it multiplies.
RANDOM_BLOCK = 1 << 20


def build_step(impl: registry.Impl, shape: sweep.Shape, dtype: str, device: str, mode: str,
               seed: int = 0) -> Callable[[], object]:
    """A case's inputs and parameters, and the call that is timed: forward, or forward and backward."""
    td = sweep.dtype_of(dtype)
    gen = torch.Generator().manual_seed(seed)
    training = mode == "forward_backward"

    def rand(*size):
        n = math.prod(size)
        if n <= RANDOM_BLOCK:
            return torch.randn(size, generator=gen).to(device=device, dtype=td)
        # Drawn into the tensor's own first block and copied on from there: no second buffer,
        # so the host's peak memory (HostMemory) is what a tensor drawn whole gave.
        out = torch.empty(n)
        out[:RANDOM_BLOCK].normal_(generator=gen)
        for start in range(RANDOM_BLOCK, n, RANDOM_BLOCK):
            out[start:start + RANDOM_BLOCK].copy_(out[:min(RANDOM_BLOCK, n - start)])
        return out.view(size).to(device=device, dtype=td)

    weight = nn.Parameter(rand(shape.out_features, shape.in_features) / shape.in_features**0.5,
                          requires_grad=training)
    bias = nn.Parameter(rand(shape.out_features), requires_grad=training)
    forward = impl.build(weight, bias)
    x = rand(*shape.input_shape).requires_grad_(training)
    if not training:
        # Nothing requires grad, so no autograd graph is built: inference, without
        # the cost of entering torch.no_grad() inside the timed call.
        def step():
            return forward(x)
    else:
        gy = rand(*shape.batch, shape.out_features)
        params = (x, weight, bias)

        def step():
            for p in params:
                p.grad = None  # a training step starts from cleared gradients
            forward(x).backward(gy)
    return step


def compile_cost(variant: str, shape_id: str, dtype: str, device: str, mode: str) -> dict:
    """A compiled variant's compile time and graphs on one case: ``{cold, warm, graphs, graph_breaks}``.

    As PyTorch's compiler benchmarks measure it: the first compiled call less the eager
    implementation's own first call.  Cold with an empty inductor cache; warm after
    ``torch._dynamo.reset()`` with the cache kept, as a second process finds it.
    """
    base, _compile_mode = compiled.base_of(variant)
    shape = sweep.parse_shape(shape_id)

    def first_call(name: str) -> float:
        step = build_step(registry.get(name), shape, dtype, device, mode)
        t0 = sync_clock()
        step()
        return sync_clock() - t0

    # The process's first call on the device creates what no case owns (cuBLAS handles and
    # workspaces on CUDA, the CPU's thread pool and kernel dispatch): a throwaway call first.
    first_call(base)
    eager = first_call(base)
    return compiled.first_calls(lambda: first_call(variant), eager, device)


# The speedups' block pairs per process and case (the catalogue's kind ``speedup``), at most: fewer
# for a long call.  Results from before the speedup worker hold every block, this many
# per process (report.load.samples_per_process).
SPEEDUP_BLOCKS = 12
# Processes per speedup case: the page's interval spans the spread between them.
SPEEDUP_PROCESSES = int(os.environ.get(envvars.SPEEDUP_PROCESSES, "4"))
