"""Instructions per call under callgrind: a deterministic cost for the history and the gate.

Wall time on a shared machine moves 20-50% from one minute to the next, so a
history of wall times cannot show a 5% step.  The number of instructions a call
executes does not depend on the neighbours: measured under valgrind's callgrind,
it is the same in every run of one commit, to well under 1% (see
``benchmarks/README.md`` for the measured agreement).  What it cannot see: memory
stalls (a memory-bound case can slow down with the same instructions), the
AVX-512 paths (valgrind shows the program no AVX-512), and the GPU.

How one set of counts is taken (``measure``):

* **One valgrind process for all the cases** of a commit and environment: importing
  torch under valgrind is most of the cost.  It starts with instrumentation off
  (``--instr-atstart=no``: the import then runs about 4x faster than instrumented),
  warms up every mode once, and switches instrumentation on through a callgrind
  client request (torch only exposes the collection toggle).
* **Per case**: prepared with a fixed seed, warm-up calls with collection off, then
  ``calls`` calls with collection on and the garbage collector off; the dump is
  named after the case (``CALLGRIND_DUMP_STATS_AT``), so every dump says which case
  it holds.  The count reported is the dump's total over ``calls``.
* **Pinned dispatch** (``PINNED_ENV``): the code path depends on what the CPU
  offers, so ATen, MKL and oneDNN are each told to take their AVX2 path, the
  path valgrind can run on any x86-64 host.  One thread: a second thread's
  spinning would be counted.
* **Faults**: a case that raises is recorded with its error; a case that kills or
  hangs the process is recorded with the reason, and a fresh process measures
  the rest.

The per-function counts of each case are kept beside the asv results
(``functioncounts``), so a changed count can be traced to the functions behind it.
The interface to valgrind itself (command line, client requests, dumps) is
``callgrind``.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from . import callgrind, compiled, envvars, suite, supervise, sweep

# Why each variable is pinned; together they make one commit's counts the same on
# any x86-64 host (valgrind 3.19 hides AVX-512 anyway, but a newer one may not).
PINNED_ENV = {
    # ATen picks its vectorised kernels (DEFAULT, AVX2, AVX512) from the CPU at start-up.
    "ATEN_CPU_CAPABILITY": "avx2",
    # MKL dispatches its GEMMs on the CPU model; CBWR fixes the code path across CPUs.
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "MKL_CBWR": "AVX2",
    # oneDNN (bfloat16 and some float32 paths) has its own JIT dispatch (both spellings).
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    # One thread: another thread's spin-waiting would be counted as work.
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    # Python's string hashing is randomised per process; dict layouts, and so counts, with it.
    "PYTHONHASHSEED": "0",
}

# The only variables the worker inherits: the environment sits at the top of the
# process's stack, so its size moves the stack's alignment, and counts with it
# (0.15% on a small case for a 500-byte variable, 1.2% seen between two sweeps run
# by asv).  What the worker needs: finding Python, linbench and plugins, and a home.
INHERITED_ENV = ("PATH", "HOME", "PYTHONPATH", "LD_LIBRARY_PATH", "TMPDIR", "LINEAR_IMPLS_PLUGINS",
                 envvars.PLUGIN_PATH, envvars.SWEEP, envvars.THREADS, envvars.CHECK_CACHE)


def worker_env(base: dict[str, str]) -> dict[str, str]:
    """The worker's whole environment: the inherited variables, then the pinned ones."""
    env = {k: base[k] for k in INHERITED_ENV if k in base}
    env.update(PINNED_ENV)
    env["LANG"] = "C.UTF-8"
    return env


# A regex, as asv run's -b: only cases whose asv name matches it are counted (asv
# cannot tell setup_cache which cases -b selected, so without it the sweep is counted).
SELECT_ENV = envvars.INSTRUCTIONS_SELECT
BENCHMARK = suite.BY_KIND["instructions"].asv_name

# Calls are counted until about this many instructions are collected per case (at
# most MAX_CALLS calls): a tiny call's count moves by a few hundred instructions
# with the interpreter's state, which averaging over calls spreads out, while a
# large call's count is steady from the first (and costs seconds under valgrind).
TARGET_INSTRUCTIONS = 500_000
MAX_CALLS = 10
# Uncounted calls after the one bench.prepare makes: a small call's first few
# calls still settle caches (the allocator's, the dispatcher's).  A case counted in
# one call is large enough that prepare's call settled it (see TARGET_INSTRUCTIONS).
MAX_WARMUP_CALLS = 2
# Cases whose input and weight hold more elements than this get no count: valgrind
# runs the random fill of their inputs 50-100x slower than the CPU does (seconds per
# million elements, with instrumentation on or off), and such cases are the
# memory-bound ones, where an instruction count says least.
MAX_ELEMENTS = 2 << 20
# No dump for this long means the case hangs: the process is killed, the case failed.
CASE_TIMEOUT_S = 300.0
MAX_RESTARTS = 5


class InstructionsUnavailable(RuntimeError):
    """Instruction counts cannot be taken here (no valgrind, not x86-64 Linux)."""


def unavailable_reason() -> str | None:
    """Why instructions cannot be counted on this machine, or None when they can."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"instruction counts need x86-64 Linux (this is {sys.platform} {platform.machine()})"
    if shutil.which("valgrind") is None:
        return "valgrind not installed (Debian: apt-get install valgrind)"
    return None


# --- which cases ---------------------------------------------------------------------------

# Rough instructions per FLOP of a CPU GEMM under valgrind's AVX2 view (8 float32 or 4
# float64 lanes, fused multiply-add; bfloat16 and float16 are converted to float32 on
# the way), and per byte of elementwise traffic.  Used only to skip cases that would
# take minutes under valgrind: the budget check, not a measurement.
_FLOPS_PER_INSTRUCTION = {"float32": 12.0, "float64": 6.0, "bfloat16": 4.0, "float16": 4.0}
_BYTES_PER_INSTRUCTION = 8.0
_CALL_OVERHEAD = 30_000  # Python, dispatch and autograd around even a tiny call


def estimated_instructions(shape: sweep.Shape, dtype: str, mode: str, workspace_bytes: int = 0) -> float:
    itemsize = sweep.dtype_of(dtype).itemsize
    moved = shape.tensor_bytes(itemsize, mode) + workspace_bytes * sweep.MODE_FLOP_FACTOR[mode]
    return (shape.flops(mode) / _FLOPS_PER_INSTRUCTION[dtype] + moved / _BYTES_PER_INSTRUCTION
            + _CALL_OVERHEAD * sweep.MODE_FLOP_FACTOR[mode])


@dataclass(frozen=True)
class CountedCase:
    """One CPU case counted under callgrind: what the callgrind worker is given, and its key."""

    impl: str
    shape: str
    dtype: str
    mode: str

    @property
    def key(self) -> str:
        return case_key(self.impl, self.shape, self.dtype, self.mode)


def case_key(impl: str, shape: str, dtype: str, mode: str) -> str:
    return f"{impl} {shape} {dtype} {mode}"


def skip_reason(impl, shape: sweep.Shape, dtype: str, mode: str, sweep_def: sweep.Sweep) -> str | None:
    """Why a CPU case gets no instruction count (None when it does)."""
    if compiled.is_compiled(impl.name):
        return "not counted: compiling runs a C++ compiler, minutes under valgrind (its time and ratio are measured)"
    if dtype not in sweep_def.instruction_dtypes:
        return f"instructions are counted in {', '.join(sweep_def.instruction_dtypes) or 'no dtype'} " \
               f"in the {sweep_def.name!r} sweep"
    reason = sweep.skip_reason(impl, shape, dtype, "cpu", mode, sweep_def)
    if reason:
        return reason
    elements = shape.rows * shape.in_features + shape.in_features * shape.out_features
    if elements > MAX_ELEMENTS:
        return (f"{elements / 2**20:.0f} M input and weight elements: over the {MAX_ELEMENTS / 2**20:.0f} M "
                "that valgrind fills in seconds (instruction counts cover the smaller cases)")
    itemsize = sweep.dtype_of(dtype).itemsize
    workspace = impl.limits.workspace(shape.rows, shape.in_features, shape.out_features, itemsize) \
        if impl.limits.workspace else 0
    est = estimated_instructions(shape, dtype, mode, workspace)
    if est > sweep_def.max_call_instructions:
        return (f"estimated {est / 1e6:.0f} M instructions a call, over the {sweep_def.name!r} sweep's "
                f"budget of {sweep_def.max_call_instructions / 1e6:.0f} M under valgrind")
    return None


def asv_name(case: CountedCase) -> str:
    """The case's name as asv writes it (and matches ``-b`` against)."""
    return f"{BENCHMARK}({case.impl!r}, {case.shape!r}, {case.dtype!r}, 'cpu', {case.mode!r})"


def select_cases(sweep_def: sweep.Sweep, impls: Iterable,
                 select: str | None = None) -> tuple[list[CountedCase], dict[str, str]]:
    """The sweep's CPU cases to count, and the reason for each one that is not counted.

    ``select``: a regex (as ``asv run -b``); cases whose asv name it does not match are left out.
    """
    pattern = re.compile(select) if select else None
    chosen, skipped = [], {}
    for impl, shape, dtype, _cpu, mode in sweep.cases(sweep_def, impls, sweep.DTYPES, ["cpu"], sweep.MODES):
        case = CountedCase(impl.name, shape.id, dtype, mode)
        if pattern and not pattern.search(asv_name(case)):
            skipped[case.key] = f"not counted: ${SELECT_ENV} ({select!r}) leaves it out"
            continue
        reason = skip_reason(impl, shape, dtype, mode, sweep_def)
        if reason:
            skipped[case.key] = reason
        else:
            chosen.append(case)
    return chosen, skipped


def calls_for(case: CountedCase) -> int:
    """How many calls to count: enough that the total nears TARGET_INSTRUCTIONS."""
    est = estimated_instructions(sweep.parse_shape(case.shape), case.dtype, case.mode)
    return max(1, min(MAX_CALLS, math.ceil(TARGET_INSTRUCTIONS / est)))


def warmup_calls(calls: int) -> int:
    """Uncounted calls before ``calls`` counted ones: none for a case counted in one call."""
    return 0 if calls == 1 else min(MAX_WARMUP_CALLS, calls)


# --- the worker, inside valgrind ------------------------------------------------------------


def _warm_up_modes() -> None:
    """One tiny forward and training step: the first backward imports and initialises a lot,
    which should happen before instrumentation starts, not inside the first case."""
    import torch

    x = torch.randn(2, 4, requires_grad=True)
    w = torch.randn(3, 4, requires_grad=True)
    torch.nn.functional.linear(x, w).sum().backward()
    (x @ w.T).sum().backward()


def _worker(cases_file: str, progress_file: str) -> int:
    import torch

    from . import bench

    torch.set_num_threads(1)
    requests = callgrind.ClientRequests()
    if not requests.running_on_valgrind():
        print("linbench: the instruction worker must run under valgrind", file=sys.stderr)
        return 2
    spec = json.loads(Path(cases_file).read_text())
    sweep_def = sweep.load(spec["sweep"])
    _warm_up_modes()
    # Every object so far (torch's modules, ~165k) moves out of the collector's reach: the
    # full collection before each case's counted calls then walks only that case's objects.
    # Under valgrind a collection over all of them costs about as much as a small case.
    gc.collect()
    gc.freeze()
    requests.start_instrumentation()
    with open(progress_file, "a", buffering=1) as progress:
        for impl, shape, dtype, mode, calls in spec["cases"]:
            key = case_key(impl, shape, dtype, mode)
            progress.write(json.dumps({"start": key, "t": time.monotonic()}) + "\n")
            try:
                case = bench.prepare(impl, shape, dtype, "cpu", mode, check=False, sweep_def=sweep_def)
                for _ in range(warmup_calls(calls)):
                    case.step()
                gc.collect()
                gc.disable()  # a collection inside the counted calls would be counted
                try:
                    requests.toggle_collect()
                    for _ in range(calls):
                        case.step()
                    requests.toggle_collect()
                finally:
                    gc.enable()
                requests.dump(key)
                progress.write(json.dumps({"done": key, "calls": calls, "t": time.monotonic()}) + "\n")
            except Exception as exc:  # a faulty implementation: record it and go on
                progress.write(json.dumps({"error": key, "reason": f"{type(exc).__name__}: {exc}"[:500]}) + "\n")
            finally:
                case = None
    return 0


# --- running valgrind ------------------------------------------------------------------------


def measure(cases: list[CountedCase], sweep_name: str, *, python: str = sys.executable, env: dict | None = None,
            workdir: Path | None = None, log: Callable[[str], None] | None = None,
            case_timeout: float = CASE_TIMEOUT_S) -> dict[str, dict]:
    """Count every case under callgrind, in as few valgrind processes as faults allow.

    Returns ``{case key: {"instructions": per call, "calls": n, "functions": {name: per call}}}``
    for measured cases and ``{"error": reason}`` for the ones that raised, crashed or hung.
    """
    reason = unavailable_reason()
    if reason:
        raise InstructionsUnavailable(reason)
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    own_tmp = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="linbench-callgrind-")) if own_tmp else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    child_env = worker_env(dict(os.environ if env is None else env))
    by_key = {c.key: c for c in cases}
    run_dirs: list[Path] = []

    def command(todo: list[str], progress_file: Path) -> list[str]:
        # One folder per valgrind process (run1, run2, ...): its cases and its dumps.
        run_dir = workdir / f"run{len(run_dirs) + 1}"
        run_dirs.append(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir()
        spec = {"sweep": sweep_name, "cases": [[c.impl, c.shape, c.dtype, c.mode, calls_for(c)]
                                               for c in (by_key[k] for k in todo)]}
        (run_dir / "cases.json").write_text(json.dumps(spec))
        log(f"linbench: counting instructions of {len(todo)} cases under callgrind"
            + (f" (process {len(run_dirs)})" if len(run_dirs) > 1 else ""))
        return [*callgrind.command(run_dir / "callgrind.out"), python, "-m", "linear_impls.instructions",
                str(run_dir / "cases.json"), str(progress_file)]

    t_start = time.perf_counter()
    try:
        got = supervise.run_cases(list(by_key), command, workdir, env=child_env, case_timeout=case_timeout,
                                  max_restarts=MAX_RESTARTS, label="valgrind", log=log)
        results: dict[str, dict] = {k: {"error": r["error"]} if "error" in r else {"calls": r["calls"]}
                                    for k, r in got.items()}
        for run_dir in run_dirs:
            for desc, total, functions in callgrind.iter_dumps(run_dir):
                if desc in results and "calls" in results[desc]:
                    n = results[desc]["calls"]
                    results[desc].update(instructions=total / n, functions={f: c / n for f, c in functions.items()})
        failed_start = [r["error"] for r in results.values() if "worker failed to start" in r.get("error", "")]
        if results and len(failed_start) == len(results):  # valgrind itself, not one case
            raise InstructionsUnavailable(failed_start[0])
    finally:
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)
    n_ok = sum("instructions" in r for r in results.values())
    log(f"linbench: counted {n_ok} of {len(cases)} cases in {time.perf_counter() - t_start:.0f} s")
    return results


if __name__ == "__main__":
    sys.exit(_worker(*sys.argv[1:3]))
