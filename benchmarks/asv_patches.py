"""The two asv_runner internals the benchmark suite changes, in one place.

asv_runner offers no option for either, so ``bench_linear.py`` replaces them at import
(``apply``), and ``tests/test_asv_patches.py`` fails when an asv_runner release renames
or stops using them, instead of the timings quietly becoming wrong again.  It lives
beside the benchmarks, not in ``linear_impls``: asv benchmarks old commits with this
folder and the old commit's package, and the patches must apply to those runs too.

1. ``TimeBenchmark._setup_isolates_timed_calls``: when a benchmark has a ``setup``,
   asv_runner times a single call per sample and re-runs ``setup`` before each one.
   The suite's ``setup`` is memoized (it prepares one case per process), so asv_runner
   may calibrate ``number`` and time many calls per sample, as ``timeit`` does.
2. ``TimeBenchmark._param_bound_func``: asv_runner times a closure that calls the
   benchmark method, which calls the prepared step: frames that ``torch.utils.benchmark``
   (timing the step) does not pay.  For a benchmark whose method only calls the step
   its setup prepared, the step itself is timed; elsewhere ``functools.partial`` binds
   the params in C instead of a Python closure.

What each cost before it was patched, and how that was measured, is in
benchmarks/README.md ("asv_runner's timer").
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
from collections.abc import Callable

# asv_runner releases on which both patches were checked to apply and to time the step.
VALIDATED = ("0.3.2",)


def problems() -> list[str]:
    """Why a patch would not apply to the installed asv_runner (empty when both do)."""
    try:
        from asv_runner.benchmarks import time as asv_time
    except ImportError as exc:
        return [f"asv_runner.benchmarks.time cannot be imported: {exc}"]
    out = []
    cls = asv_time.TimeBenchmark
    run_source = inspect.getsource(cls)
    if not hasattr(cls, "_setup_isolates_timed_calls") or "_setup_isolates_timed_calls" not in run_source:
        out.append("TimeBenchmark no longer has or reads _setup_isolates_timed_calls")
    bound = getattr(cls, "_param_bound_func", None)
    if bound is None or "_param_bound_func(" not in run_source.replace("def _param_bound_func(", ""):
        out.append("TimeBenchmark no longer has or calls _param_bound_func")
    elif list(inspect.signature(bound).parameters)[:1] != ["self"]:
        out.append(f"TimeBenchmark._param_bound_func has a new signature {inspect.signature(bound)}")
    version = importlib.metadata.version("asv_runner")
    if version not in VALIDATED:
        out.append(f"asv_runner {version} is not among the releases these patches were validated on "
                   f"({', '.join(VALIDATED)}): re-run benchmarks/compare_timer.py and add it")
    return out


def apply(prepared_step: Callable[[object], Callable[[], object] | None]) -> list[str]:
    """Patch asv_runner; ``prepared_step(benchmark instance)`` is the step to time for that
    instance's class, or None.  Returns ``problems()``; whatever can be patched is patched."""
    from asv_runner.benchmarks import time as asv_time

    cls = asv_time.TimeBenchmark
    if hasattr(cls, "_setup_isolates_timed_calls"):
        cls._setup_isolates_timed_calls = False

    def bound(self, *param):
        step = prepared_step(getattr(self.func, "__self__", None))
        if step is not None:
            return step
        return functools.partial(self.func, *param) if param else self.func

    if hasattr(cls, "_param_bound_func"):
        cls._param_bound_func = bound
    return problems()
