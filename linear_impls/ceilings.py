"""The machine's own roofs for the roofline: compute peak per dtype and memory bandwidth.

Measured by the suite itself (``bench_linear.Ceilings``), so every machine's ceilings
are recorded with its history in asv, beside the cases they bound, with the same
thread count.  As triton's roofline tool does:

* **compute**: the best rate of the kernels a linear layer reaches in the dtype: a large
  square GEMM (``torch.mm``, the size grown until one call takes at least
  ``MIN_CALL_SECONDS`` so it runs at its steady rate, and the size before it), a
  transformer layer's rectangular GEMM (``LAYER_GEMM``), and a GEMV on a ``GEMV_SIZE``
  square matrix, both as ``torch.mv`` and as a linear layer of one row
  (``F.linear``, which takes another kernel).  The best of them, because a dtype's fast
  path is not always the GEMM's: on a CPU without native half-precision matrix units,
  float16's large GEMM takes a slow path while its GEMV does not, and a GEMM-only roof
  left every float16 GEMV case at 4-14x "of its roof";
* **bandwidth**: the better of a streaming triad ``a = b + s·c`` (``torch.add(b, c,
  alpha=s, out=a)``) over arrays far larger than the caches, counting the three
  arrays moved once each (STREAM's convention), and the float32 GEMV's stream of its
  matrix (bytes read over time): a read-only stream, which a linear layer's weight is,
  ran twice the triad's rate here, and a triad-only roof put the GEMV cases at 2x it.

* **cache bandwidth** (CUDA): the same triad over arrays that fit in half the GPU's L2
  (``cache_bandwidth``).  The timed benchmarks call a layer over and over on the same
  tensors, so a case whose x, W, b and y fit in the L2 (a 32 MiB float16 weight does
  in an H100's 50 MB) runs from the L2, not from HBM: its roof is the L2's bandwidth,
  or its point would plot above an HBM roof it never touched.  On a CPU the GEMV
  stream above already reads from beyond the caches, and small cases are bound by
  the call's overhead long before the caches' bandwidth.

Both are best-of-N: a ceiling is what the machine can do, and on a shared runner
interference only ever lowers a rate.
"""

from __future__ import annotations

import time

import torch

from .sweep import dtype_of

# One GEMM call at least this long: long enough to run at its steady rate, short enough
# that a slow dtype (half precision on a CPU without native support) stays within seconds.
MIN_CALL_SECONDS = 0.05
MAX_GEMM_SIZE = {"cpu": 4096, "cuda": 16384}
# Each triad array: far beyond the last-level cache (tens of MiB on a server CPU).
TRIAD_BYTES = {"cpu": 256 * 2**20, "cuda": 2 * 2**30}
# Best of this many calls: interference only lowers a rate, and on a shared machine five
# calls left a float16 GEMM peak 25% under a sweep case's rate (10 calls: ~1 s a dtype here).
REPEATS = 10
GEMV_SIZE = {"cpu": 4096, "cuda": 16384}


def _clock(device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


# ... and calls for at least this long: twenty calls of a 1.4 ms float16 GEMV spanned 28 ms,
# short enough to fall inside one slow spell of a shared machine; that roof came out 15%
# under the GEMV case the sweep timed over a second (benchmarks/README.md).
MIN_SECONDS = 0.5
# A slow path (half precision without native support: a 1024x768x3072 GEMM took seconds on
# an AVX2-only CPU) stops after this long, two calls at least.
MAX_SECONDS = 3.0


def _best(fn, device: str, repeats: int = REPEATS, min_seconds: float = MIN_SECONDS) -> float:
    fn()  # warm-up: first-call costs (allocation, kernel selection) are not the machine's rate
    best = float("inf")
    start, n = time.perf_counter(), 0
    while (n < repeats or time.perf_counter() - start < min_seconds) \
            and not (n >= 2 and time.perf_counter() - start > MAX_SECONDS):
        t0 = _clock(device)
        fn()
        best = min(best, _clock(device) - t0)
        n += 1
    return best


# The compute kernels are timed in this many passes over all of them, each pass a share of
# their calls: a slow spell of a shared machine then meets one pass of each kernel, not
# every call of one.  One pass put the float32 roof at 142 GFLOP/s here while a sweep case
# timed seconds later ran the same GEMM at 165 (benchmarks/README.md).
PASSES = 3


# A transformer's feed-forward layer as a GEMM, (rows, in, out): BERT-base's 1024 tokens,
# 768 -> 3072.  A rectangular GEMM whose operands fit the caches better than a large square
# one's can run faster: float64's square 2048 GEMM read 62 GFLOP/s here while the sweep's
# 8x128x768x3072 case ran at 70, 110-115% "of its roof" (benchmarks/README.md).
LAYER_GEMM = (1024, 768, 3072)


def _gemv_calls(dtype: str, device: str) -> list[tuple[str, object]]:
    """(name, the call) of the two GEMV kernels on a ``GEMV_SIZE`` square matrix: ``torch.mv``
    and a linear layer of one row (``F.linear``, which takes another kernel)."""
    td = dtype_of(dtype)
    m = GEMV_SIZE[device]
    mat = torch.randn(m, m, device=device).to(td)
    vec = torch.randn(m, device=device).to(td)
    row = vec.reshape(1, m)
    return [("mv", lambda: torch.mv(mat, vec)), ("linear of one row", lambda: torch.nn.functional.linear(row, mat))]


def _peak_kernels(dtype: str, device: str) -> tuple[list[tuple[str, int, object]], int]:
    """(name, FLOPs a call, the call) of every kernel the compute roof takes the best of, and
    the largest square GEMM's size."""
    td = dtype_of(dtype)
    linear = torch.nn.functional.linear
    kernels = []
    n, previous = 256, None
    while True:
        a = torch.randn(n, n, device=device).to(td)
        b = torch.randn(n, n, device=device).to(td)
        seconds = _best(lambda a=a, b=b: torch.mm(a, b), device, repeats=1, min_seconds=0)
        if seconds >= MIN_CALL_SECONDS or n >= MAX_GEMM_SIZE[device]:
            break
        previous = (n, a, b)
        n *= 2
    for size, p, q in ((n, a, b), *([previous] if previous else [])):
        kernels.append((f"mm {size}", 2 * size**3, lambda p=p, q=q: torch.mm(p, q)))
        kernels.append((f"linear {size}", 2 * size**3, lambda p=p, q=q: linear(p, q)))
    rows, k, out = LAYER_GEMM
    x = torch.randn(rows, k, device=device).to(td)
    w = torch.randn(out, k, device=device).to(td)
    kernels.append(("layer GEMM", 2 * rows * k * out, lambda: linear(x, w)))
    m = GEMV_SIZE[device]
    kernels += [(name, 2 * m * m, call) for name, call in _gemv_calls(dtype, device)]
    return kernels, n


def peak_gflops(dtype: str, device: str = "cpu") -> tuple[float, int]:
    """(GFLOP/s, n): the best rate of the kernels a linear layer reaches in ``dtype`` on
    ``device`` (module docstring), each timed in ``PASSES`` passes over them all.  ``n``:
    the largest square GEMM's size."""
    kernels, n = _peak_kernels(dtype, device)
    best = dict.fromkeys((name for name, _, _ in kernels), float("inf"))
    for _ in range(PASSES):
        for name, _, call in kernels:
            best[name] = min(best[name], _best(call, device, repeats=max(2, REPEATS // PASSES),
                                               min_seconds=MIN_SECONDS / PASSES))
    return max(flops / best[name] / 1e9 for name, flops, _ in kernels), n


def gemv_gflops(dtype: str, device: str = "cpu") -> tuple[float, int]:
    """(GFLOP/s, n): the best rate of an n x n matrix times a vector (2n² FLOPs), as
    ``torch.mv`` or as a linear layer of one row, whichever kernel is faster."""
    return 2 * GEMV_SIZE[device] ** 2 / _gemv_seconds(dtype, device) / 1e9, GEMV_SIZE[device]


def _gemv_seconds(dtype: str, device: str) -> float:
    return min(_best(call, device, repeats=REPEATS * 2) for _name, call in _gemv_calls(dtype, device))


def bandwidth_gbs(device: str = "cpu") -> float:
    """GB/s (10^9 bytes): the better of a float32 triad ``a = b + s·c`` (three arrays moved
    per call) and a float32 GEMV's read of its matrix."""
    return max(triad_gbs(device), gemv_stream_gbs(device))


def triad_gbs(device: str = "cpu") -> float:
    n = TRIAD_BYTES[device] // 4
    b = torch.ones(n, device=device)
    c = torch.ones(n, device=device)
    a = torch.empty(n, device=device)
    seconds = _best(lambda: torch.add(b, c, alpha=0.5, out=a), device)
    return 3 * TRIAD_BYTES[device] / seconds / 1e9


def gemv_stream_gbs(device: str = "cpu") -> float:
    return 4 * GEMV_SIZE[device] ** 2 / _gemv_seconds("float32", device) / 1e9


# Triad calls timed together on CUDA: one L2-sized triad takes microseconds, its launch as long.
CACHE_CALLS = 100


def cache_bandwidth(device: str = "cuda") -> tuple[float, int]:
    """(GB/s, cache bytes): a float32 triad whose three arrays fill half the GPU's L2, timed
    over ``CACHE_CALLS`` calls at a time (``bench_linear.CacheBandwidth``).  CUDA only
    (``NotImplementedError`` elsewhere)."""
    if device != "cuda":
        raise NotImplementedError("the cache's bandwidth is a roof on CUDA only (module docstring)")
    l2 = int(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0) or 0)
    if l2 <= 0:
        raise NotImplementedError("torch does not report this GPU's L2 size")
    n = l2 // 2 // 3 // 4
    b = torch.ones(n, device=device)
    c = torch.ones(n, device=device)
    a = torch.empty(n, device=device)

    def calls():
        for _ in range(CACHE_CALLS):
            torch.add(b, c, alpha=0.5, out=a)

    seconds = _best(calls, device) / CACHE_CALLS
    return 3 * n * 4 / seconds / 1e9, l2
