"""``torch.compile``'d variants of registered implementations, derived, never written by hand.

``compiled_<name>`` is ``torch.compile`` (inductor, ``dynamic=False``) of ``<name>``'s
forward, built by ``<name>``'s own factory: a built-in or a plugin alike.  On CUDA,
``compiled_ro_<name>`` compiles with ``mode="reduce-overhead"`` (CUDA graphs), and
clones each output, because a CUDA graph's next replay overwrites the memory of the
last.  A variant is checked, benchmarked and reported like any implementation.

Opt in with ``$LINBENCH_COMPILE`` (``f_linear,mul_sum`` or ``all``), ``linbench check
--compile``, or :func:`register_compiled`; the asv suite registers the variants its
sweeps time (``sweep.COMPILE_IMPLS``), on the sweeps' compile subset of shapes.

Costs, and why each rule is here:

* Compilation happens when a variant is built and first called, which the suite
  does in setup; the timed calls run under ``torch.compiler.set_stance(
  "fail_on_recompile")`` (:func:`steady`), so a recompile fails the case with the
  guard that failed instead of being timed.
* Every build of a variant compiles its own graph (the parameters are guarded on):
  the checks build one per case, far more than dynamo's default limit of 8
  recompiles per code object, past which it would silently run the eager code.
  ``RECOMPILE_LIMIT`` lifts it.
"""

from __future__ import annotations

import os

import torch

from . import registry
from .registry import Impl, Limits

ENV = "LINBENCH_COMPILE"
PREFIX = {"default": "compiled_", "reduce-overhead": "compiled_ro_"}
RECOMPILE_LIMIT = 1024


def variant_name(base: str, mode: str = "default") -> str:
    return PREFIX[mode] + base


def base_of(name: str) -> tuple[str, str] | None:
    """(base implementation, mode) of a compiled variant's name; None for any other name."""
    for mode, prefix in sorted(PREFIX.items(), key=lambda kv: -len(kv[1])):
        if name.startswith(prefix):
            return name[len(prefix):], mode
    return None


def is_compiled(name: str) -> bool:
    return base_of(name) is not None


def _allow_recompiles() -> None:
    config = torch._dynamo.config
    for knob in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                 "accumulated_cache_size_limit"):
        if hasattr(config, knob):
            setattr(config, knob, max(getattr(config, knob), RECOMPILE_LIMIT))


def compiler_missing(device: str) -> str | None:
    """Why inductor cannot compile here (None when it can): on the CPU it needs a C++ compiler."""
    if device != "cpu":
        return None
    import shutil

    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        return f"no C++ compiler ({cxx}) for inductor on the CPU: install g++ (make test and make bench do)"
    return None


def register_compiled(base: str, mode: str = "default") -> str:
    """Register the compiled variant of ``base`` (a registered name); returns its name."""
    if mode not in PREFIX:
        raise registry.RegistryError(f"compile mode {mode!r}: choose one of {', '.join(PREFIX)}")
    impl = registry.get(base)
    name = variant_name(base, mode)
    if name in registry.names():
        return name

    def factory(weight, bias, impl: Impl = impl):
        _allow_recompiles()
        forward = torch.compile(impl.build(weight, bias), dynamic=False,
                                mode=None if mode == "default" else mode)
        if mode == "reduce-overhead":
            return lambda x: forward(x).clone()
        return forward

    # The check cache keys on the sources of both modules: the base's and this one.
    factory.key_modules = (impl.factory.__module__, __name__)
    # Checks and benchmarks skip (n/a, with this reason) where the variant cannot compile.
    factory.unavailable = compiler_missing
    limits = impl.limits if mode == "default" else Limits(
        impl.limits.dtypes, ("cuda",), impl.limits.max_rank, impl.limits.workspace)
    how = "torch.compile" if mode == "default" else "torch.compile(mode='reduce-overhead'), outputs cloned"
    registry.register(name, description=f"{how} of {base}: {impl.description}",
                      expression=f"{how}({impl.expression})", limits=limits)(factory)
    return name


def register_from_env(value: str | None = None) -> list[str]:
    """The variants ``$LINBENCH_COMPILE`` asks for (``all``: every non-compiled implementation)."""
    value = os.environ.get(ENV, "") if value is None else value
    wanted = [w.strip() for w in value.split(",") if w.strip()]
    if "all" in wanted:
        wanted = [n for n in registry.names() if not is_compiled(n)]
    out = []
    for base in wanted:
        for mode in PREFIX:
            if mode == "reduce-overhead" and not torch.cuda.is_available():
                continue
            out.append(register_compiled(base, mode))
    return out


def steady() -> None:
    """From now on a recompile raises: the timed calls of a compiled variant are steady state."""
    torch.compiler.set_stance("fail_on_recompile")


_COMPILER_LOADED = False


def _load_compiler() -> None:
    """Compile a throwaway function once per process, in a throwaway cache: importing
    inductor and probing the C++ toolchain take seconds that belong to no case."""
    global _COMPILER_LOADED
    if _COMPILER_LOADED:
        return
    import tempfile

    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    with tempfile.TemporaryDirectory() as cache, temporary_cache_dir(cache):
        torch.compile(lambda t: t * 2 + 1, dynamic=False)(torch.ones(3))
        torch._dynamo.reset()
    _COMPILER_LOADED = True


def first_calls(first_call, eager_first: float) -> dict:
    """Cold and warm compile time of ``first_call()`` (seconds of a fresh build's first call),
    less ``eager_first``, with the graphs compiled and the graph breaks met on the cold one.

    Cold: an empty inductor cache (torch's own ``temporary_cache_dir``, which also clears
    the in-memory caches).  Warm: the same directory after ``torch._dynamo.reset()`` and
    clearing the in-memory caches, as a second process finds it.  Both in a process whose
    compiler is already loaded (``_load_compiler``).
    """
    import tempfile

    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir
    from torch._inductor.utils import clear_caches

    _load_compiler()
    counters = torch._dynamo.utils.counters
    with tempfile.TemporaryDirectory() as cache, temporary_cache_dir(cache):
        torch._dynamo.reset()
        counters.clear()
        cold = first_call() - eager_first
        graphs = counters["stats"]["unique_graphs"]
        breaks = sum(counters["graph_break"].values())
        torch._dynamo.reset()
        clear_caches()
        warm = first_call() - eager_first
    return {"cold": cold, "warm": warm, "graphs": graphs, "graph_breaks": breaks}


def explain(variant: str, batch: tuple[int, ...] = (5,), in_features: int = 16, out_features: int = 8) -> dict:
    """What dynamo makes of a variant's forward on a small float32 CPU case:
    ``{graphs, graph_breaks, reasons}`` (``torch._dynamo.explain``)."""
    base, _mode = base_of(variant)
    impl = registry.get(base)
    weight = torch.nn.Parameter(torch.randn(out_features, in_features))
    bias = torch.nn.Parameter(torch.randn(out_features))
    forward = impl.build(weight, bias)
    torch._dynamo.reset()
    import logging

    # explain() reports the breaks itself; dynamo would also log each one as a warning.
    quiet = logging.getLogger("torch._dynamo")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        out = torch._dynamo.explain(forward)(torch.randn(*batch, in_features))
    finally:
        quiet.setLevel(level)
    reasons = sorted({str(getattr(b, "reason", b)).splitlines()[0][:160] for b in out.break_reasons})
    return {"graphs": out.graph_count, "graph_breaks": out.graph_break_count, "reasons": reasons}
