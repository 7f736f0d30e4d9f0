"""The quick sweep as pytest-benchmark tests: a local before/after gate without asv.

Every registered implementation (plugins too) at the ``quick`` sweep's cases, on
the CPU, in both modes.  Each case is gated before it is timed, like the asv
suite.  Not part of the unit tests (pytest's testpaths is ``tests/``), and in a
folder without ``__init__.py`` so asv, which imports every module of the
``benchmarks`` package, never imports pytest.  The README's flow:

    .venv/bin/pytest benchmarks/quick_gate --benchmark-save=before
    # upgrade torch, or change an implementation
    .venv/bin/pytest benchmarks/quick_gate --benchmark-compare --benchmark-compare-fail=median:10%

``linbench report --pytest-benchmark .benchmarks`` shows saved runs on the summary page.
"""

import pytest
import torch

import linear_impls
from linear_impls import bench, sweep

QUICK = sweep.SWEEPS["quick"]
THREADS = sweep.thread_count()
torch.set_num_threads(THREADS)
bench.steady_allocator()  # as the asv suite does: a saved run and a later one allocate alike

CASES = [
    pytest.param(impl, shape, dtype, mode, id=f"{impl}-{shape}-{dtype}-{mode}")
    for impl in linear_impls.names()
    for shape in QUICK.shapes
    for dtype in QUICK.dtypes
    for mode in sweep.MODES
]


@pytest.mark.parametrize(("impl", "shape", "dtype", "mode"), CASES)
def test_quick(benchmark, impl, shape, dtype, mode):
    try:
        case = bench.prepare(impl, shape, dtype, "cpu", mode, sweep_def=QUICK)
    except bench.CaseSkipped as exc:
        pytest.skip(str(exc))
    except bench.CheckFailed as exc:
        pytest.fail(f"correctness check failed, not timed: {exc}", pytrace=False)
    # Groups compare implementations of one case; extra_info is what linbench report reads.
    benchmark.group = f"{shape} {dtype} {mode}"
    benchmark.extra_info.update(impl=impl, shape=shape, dtype=dtype, device="cpu", mode=mode,
                                threads=THREADS, torch=torch.__version__, flops=case.flops)
    benchmark(case.step)
