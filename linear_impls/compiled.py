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

import dataclasses
import os

import torch

from . import envvars, gpu, registry
from .registry import Impl

ENV = envvars.COMPILE
PREFIX = {"default": "compiled_", "reduce-overhead": "compiled_ro_"}
RECOMPILE_LIMIT = 1024


def variant_name(base: str, compile_mode: str = "default") -> str:
    return PREFIX[compile_mode] + base


def base_of(name: str) -> tuple[str, str] | None:
    """(base implementation, torch.compile mode) of a compiled variant's name; None for any other name."""
    for compile_mode, prefix in sorted(PREFIX.items(), key=lambda kv: -len(kv[1])):
        if name.startswith(prefix):
            return name[len(prefix):], compile_mode
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
    """Why inductor cannot compile here (None when it can): on the CPU it needs a C++ compiler,
    on CUDA triton (which torch's CUDA wheels bring, and a CPU or a source build may lack)."""
    if device == "cuda":
        import importlib.util

        if importlib.util.find_spec("triton") is None:
            return "no triton for inductor on CUDA: pip install triton (torch's CUDA wheels depend on it)"
        return None
    if device != "cpu":
        return None
    import shutil

    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        return f"no C++ compiler ({cxx}) for inductor on the CPU: install g++ (make test and make bench do)"
    return None


def register_compiled(base: str, compile_mode: str = "default") -> str:
    """Register the compiled variant of ``base`` (a registered name); returns its name."""
    if compile_mode not in PREFIX:
        raise registry.RegistryError(f"torch.compile mode {compile_mode!r}: choose one of {', '.join(PREFIX)}")
    impl = registry.get(base)
    name = variant_name(base, compile_mode)
    if name in registry.names():
        return name

    def factory(weight, bias, impl: Impl = impl):
        _allow_recompiles()
        forward = torch.compile(impl.build(weight, bias), dynamic=False,
                                mode=None if compile_mode == "default" else compile_mode)
        if compile_mode == "reduce-overhead":
            return lambda x: forward(x).clone()
        return forward

    limits = impl.limits if compile_mode == "default" else dataclasses.replace(impl.limits, devices=("cuda",))
    how = "torch.compile" if compile_mode == "default" else "torch.compile(mode='reduce-overhead'), outputs cloned"
    registry.register(name, description=f"{how} of {base}: {impl.description}",
                      expression=f"{how}({impl.expression})", limits=limits,
                      # The check cache keys on the sources of the base's modules and this one.
                      key_modules=(*impl.source_modules(), __name__),
                      # Checks and benchmarks skip (n/a, with this reason) where it cannot compile.
                      unavailable_on=compiler_missing)(factory)
    return name


def register_from_env(value: str | None = None) -> list[str]:
    """The variants ``$LINBENCH_COMPILE`` asks for (``all``: every non-compiled implementation)."""
    value = os.environ.get(ENV, "") if value is None else value
    wanted = [w.strip() for w in value.split(",") if w.strip()]
    if "all" in wanted:
        wanted = [n for n in registry.names() if not is_compiled(n)]
    out = []
    for base in wanted:
        for compile_mode in PREFIX:
            if compile_mode == "reduce-overhead" and gpu.cuda_unavailable_reason() is not None:
                continue
            out.append(register_compiled(base, compile_mode))
    return out


def steady() -> None:
    """From now on a recompile raises: the timed calls of a compiled variant are steady state."""
    torch.compiler.set_stance("fail_on_recompile")


def preload() -> None:
    """Import inductor without compiling anything, so that the processes forked from this
    one compile without importing it each: the import is most of a warm-cache compile of a
    small case (benchmarks/README.md).  Runs no torch op and starts no thread, so forking
    after it stays safe."""
    import torch._dynamo  # noqa: F401
    import torch._inductor.compile_fx  # noqa: F401


_COMPILER_LOADED: set[str] = set()


def _load_compiler(device: str = "cpu") -> None:
    """Compile a throwaway function once per process and device, in a throwaway cache:
    importing inductor and probing the C++ toolchain (CPU), or starting triton and its
    compiler (CUDA), take seconds that belong to no case."""
    if device in _COMPILER_LOADED:
        return
    import tempfile

    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    with tempfile.TemporaryDirectory() as cache, temporary_cache_dir(cache):
        torch.compile(lambda t: t * 2 + 1, dynamic=False)(torch.ones(3, device=device))
        torch._dynamo.reset()
    _COMPILER_LOADED.add(device)


def first_calls(first_call, eager_first: float, device: str = "cpu") -> dict:
    """Cold and warm compile time of ``first_call()`` (seconds of a fresh build's first call),
    less ``eager_first``, with the graphs compiled and the graph breaks met on the cold one.

    Cold: an empty inductor cache (torch's own ``temporary_cache_dir``, which also clears
    the in-memory caches).  Warm: the same directory after ``torch._dynamo.reset()`` and
    clearing the in-memory caches, as a second process finds it.  Both in a process whose
    compiler is already loaded for ``device`` (``_load_compiler``).
    """
    import tempfile

    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir
    from torch._inductor.utils import clear_caches

    _load_compiler(device)
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


def explain_device(variant: str, devices: list[str]) -> str | None:
    """The device ``explain`` traces a variant on among ``devices``: the first it can run on
    (a reduce-overhead variant: CUDA only); None when it runs on none of them."""
    impl = registry.get(variant)
    return next((d for d in devices if impl.limits.excludes(dtype="float32", device=d, rank=2) is None
                 and impl.unavailable(d) is None), None)


def explain(variant: str, batch: tuple[int, ...] = (5,), in_features: int = 16, out_features: int = 8,
            device: str = "cpu") -> dict:
    """What dynamo makes of a variant's forward on a small float32 case on ``device``:
    ``{graphs, graph_breaks, reasons}`` (``torch._dynamo.explain``)."""
    base, _compile_mode = base_of(variant)
    impl = registry.get(base)
    weight = torch.nn.Parameter(torch.randn(out_features, in_features, device=device))
    bias = torch.nn.Parameter(torch.randn(out_features, device=device))
    forward = impl.build(weight, bias)
    torch._dynamo.reset()
    import logging

    # explain() reports the breaks itself; dynamo would also log each one as a warning.
    quiet = logging.getLogger("torch._dynamo")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        out = torch._dynamo.explain(forward)(torch.randn(*batch, in_features, device=device))
    finally:
        quiet.setLevel(level)
    reasons = sorted({str(getattr(b, "reason", b)).splitlines()[0][:160] for b in out.break_reasons})
    return {"graphs": out.graph_count, "graph_breaks": out.graph_break_count, "reasons": reasons}
