"""asv benchmarks: every registered implementation across the sweep.

Params always list every implementation, shape, dtype and device (the numpy
suite's rule: params never depend on the machine), so results from any machine
and sweep line up.  A case outside ``$LINBENCH_SWEEP``, on a missing device or
over the sweep's budget is skipped (n/a); a case whose correctness check fails
raises in setup, so it is never timed and shows as failed with the check's reason.

Timing, made as trustworthy as ``torch.utils.benchmark`` on a small shared machine:

* asv_runner 0.3 times a single call per sample whenever a benchmark has a
  ``setup`` (and re-runs setup before each call), which inflates a small op's time.
  We keep ``setup`` (it checks and prepares, and is where asv expects skips) but
  memoize it and turn that isolation off, so asv calibrates ``number`` and times
  many calls per sample, as ``timeit`` does.  The timed callable is the prepared
  step itself, not asv's wrapper around the method.  Both are patches of asv_runner
  internals, in ``asv_patches.py``.
* ``launch_method: forkserver`` in asv.conf.json imports torch once instead of
  once per case, a large share of a run's time with spawn.  This
  module therefore never touches CUDA at import (availability comes from NVML),
  so no CUDA context exists when the forkserver forks.
* The clock synchronizes CUDA before it is read, so queued kernels are inside
  the measured interval; on the CPU it is ``perf_counter``.
* The thread count is pinned from ``$LINBENCH_THREADS``, which asv.conf.json's
  matrix sets and records with every result.
* glibc's malloc thresholds are fixed before any fork, so a case's big temporaries
  come from the heap or from mmap the same way in every process.

What each of these cost before, and how it was measured: benchmarks/README.md,
"Figures behind the suite's choices".
"""

import itertools
import math
import os
import sys
import time

os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
# A sweep file named relative to the checkout (`LINBENCH_SWEEP=sweeps/mine.toml asv run`): asv
# runs each benchmark in a temporary folder, where that path names nothing.  Made absolute
# here, before any process forks from this one.
_sweep_ref = os.environ.get("LINBENCH_SWEEP", "")
_checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _sweep_ref and not os.path.isabs(_sweep_ref) and not os.path.exists(_sweep_ref) \
        and os.path.isfile(os.path.join(_checkout, _sweep_ref)):
    os.environ["LINBENCH_SWEEP"] = os.path.join(_checkout, _sweep_ref)
# Inductor compiles in one process, not a pool of workers competing for a shared runner's
# cores with the case being timed; recorded by Environment.track_inductor_compile_threads.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import torch  # noqa: E402

# The first backward in a process imports this (and sympy with it), which every forked
# training case paid.  Importing it here, before the forkserver forks, is pure Python:
# unlike running any op, it starts no thread.
import torch.fx.experimental.symbolic_shapes  # noqa: E402, F401

# Beside this file (its docstring says why): asv imports this module as part of the
# benchmark folder's package, scripts and tests put the folder on sys.path.
try:
    from . import asv_patches  # noqa: E402
except ImportError:
    import asv_patches  # noqa: E402
import linear_impls  # noqa: E402
from linear_impls import bench, sweep  # noqa: E402

# A plugin named but not importable here would otherwise vanish from every run in silence:
# fail asv's discovery instead, with the line linbench run and the gate look for.
# (The prefix is not spelled here: asv's traceback quotes this line beside the message.)
if linear_impls.PLUGIN_ERRORS:
    from linear_impls.plugins import ERROR_PREFIX as _PREFIX  # noqa: E402

    raise ImportError("; ".join(f"{_PREFIX} {e.removeprefix('plugin ')}" for e in linear_impls.PLUGIN_ERRORS))

try:
    from linear_impls import compiled as _compiled  # noqa: E402
except ImportError:  # a commit older than compiled variants
    _compiled = None
try:
    from linear_impls import gpu as _gpu  # noqa: E402
except ImportError:  # a commit older than pinned precision flags
    _gpu = None
try:
    from linear_impls import ceilings as _ceilings  # noqa: E402
except ImportError:  # a commit older than measured ceilings
    _ceilings = None
try:
    from linear_impls import supervise as _supervise  # noqa: E402
except ImportError:  # a commit older than the speedup worker
    _supervise = None
try:
    from linear_impls import dispatch as _dispatch  # noqa: E402
except ImportError:  # a commit older than the op traces
    _dispatch = None
try:
    from linear_impls import instructions as _instructions  # noqa: E402
except ImportError:  # a commit older than instruction counts (asv benchmarks old commits with this file)
    _instructions = None
try:
    from linear_impls import functioncounts as _functioncounts  # noqa: E402
except ImportError:  # older commits kept the per-function counts in instructions itself
    _functioncounts = _instructions

def _prepared_step(owner):
    # A _Timed method does nothing but call the step its setup prepared, and asv runs
    # setup before building the timer (memoized, so the step never changes).
    return getattr(owner, "step", None) if isinstance(owner, _Timed) else None


for _problem in asv_patches.apply(_prepared_step):
    # asv shows a benchmark module's stderr: timings may be off until this is fixed.
    print(f"linbench: asv_runner patch: {_problem}", file=sys.stderr)

torch.set_num_threads(sweep.thread_count())
# The flags the checks run under, for every case's process (linear_impls.gpu.PINNED).
if _gpu is not None:
    _gpu.pin_precision()
# Whether CUDA really runs, decided here, once, in a child process (never by initialising
# CUDA in this one, which forks every case): every forked case inherits the answer.
sweep.available_devices()
# Before any fork: every case's process then allocates alike (see bench.steady_allocator).
# Commits older than that function benchmark without it.
if hasattr(bench, "steady_allocator"):
    bench.steady_allocator()
# Nothing else runs here: any torch op (even a tiny backward) may start a thread,
# and a forked child inheriting a half-copied thread pool deadlocks (seen here:
# the child hung in torch.randn).  Each case's process starts clean instead.

# The compiled variants the sweeps time (their compile subset), registered here so the
# asv parameters are the same whatever the sweep.
# Their reduce-overhead (CUDA graph) variants too, whatever this machine has: n/a on a CPU.
if _compiled is not None:
    for _base in sweep.COMPILE_IMPLS:
        _compiled.register_compiled(_base)
        if "reduce-overhead" in getattr(_compiled, "PREFIX", {}):
            _compiled.register_compiled(_base, "reduce-overhead")
# asv cannot tell a setup_cache which cases -b selected: linbench run says it here, per
# chunk (the chunk's -b patterns); plain asv measures the sweep's every case.
SELECT_ENV = "LINBENCH_SELECT"
IMPLS = linear_impls.names()
COMPILED = [i for i in IMPLS if _compiled is not None and _compiled.is_compiled(i)]

# A sweep file's shapes are cases of their own (a built-in sweep's are all in ALL_SHAPES).
SHAPES = list(sweep.ALL_SHAPES) + list(getattr(sweep, "file_shapes", tuple)())
DTYPES = list(sweep.DTYPES)
DEVICES = list(sweep.DEVICES)
MODES = list(sweep.MODES)


def _selects_compiled(select: str) -> bool:
    """Whether ``$LINBENCH_SELECT`` (empty: plain asv, every case) selects a compiled variant's
    case of the sweep, under any catalogued metric."""
    if not select:
        return True
    import re

    from linear_impls import suite

    pattern, sweep_def = re.compile(select), sweep.current_sweep()
    for impl, shape, dtype, device, mode in itertools.product(COMPILED, sweep_def.shapes, sweep_def.dtypes,
                                                              DEVICES, MODES):
        if not sweep_def.in_compile_subset(shape, dtype, mode):
            continue
        case = {"impl": impl, "shape": shape, "dtype": dtype, "device": device, "mode": mode}
        for m in suite.METRICS:
            if all(case[k] == v for k, v in m.fixed.items()) and pattern.search(
                    f"{m.asv_name}({', '.join(repr(case[p]) for p in m.params)})"):
                return True
    return False


# asv forks every case's process from one that imported this file (its forkserver, or the
# speedups' worker): a compiled variant's case then finds inductor imported instead of
# importing it itself, where this process may time one.
if COMPILED and hasattr(_compiled, "preload") and _selects_compiled(os.environ.get(SELECT_ENV, "").strip()):
    _compiled.preload()

_prepared: dict[tuple, bench.PreparedCase] = {}


def _ref(sweep_def) -> str:
    """What names a sweep to a worker process: a sweep file by its path (a commit older than
    sweep files has built-in sweeps only, named by name)."""
    return getattr(sweep_def, "ref", sweep_def.name)


def _sweep_of(ref: str):
    # A commit older than sweep files knows the built-in sweeps by name only.
    return sweep.load(ref) if hasattr(sweep, "load") else sweep.SWEEPS[ref]


def _prepare(impl, shape, dtype, device, mode, check=True):
    key = (impl, shape, dtype, device, mode, check)
    if key not in _prepared:
        _prepared.clear()  # one case per process; never hold two cases' tensors
        try:
            _prepared[key] = bench.prepare(impl, shape, dtype, device, mode, check=check)
        except bench.CaseSkipped as exc:
            raise NotImplementedError(str(exc)) from None
    return _prepared[key]


class _Timed:
    params = [IMPLS, SHAPES, DTYPES, DEVICES]
    param_names = ["impl", "shape", "dtype", "device"]
    mode = "forward"
    timer = staticmethod(bench.sync_clock)
    # One round of 3-5 samples of >= 10 ms each, after 0.1 s of warm-up: the first
    # ~0.1 s of a fresh process runs slow (thread pool and caches settling), which a
    # shorter warm-up left in the samples.  One round, not two: wall time on a shared
    # runner decides nothing in the history (instruction counts and the ratio do), and
    # a second round bought little agreement for much of the default sweep's time
    # (benchmarks/README.md).
    rounds = 1
    repeat = (3, 5, 1.0)
    warmup_time = 0.1

    # A subclass's time_ method must do nothing but call self.step(): asv times the
    # step directly (see _bound), so anything else in the method would not be timed.

    def setup(self, impl, shape, dtype, device):
        # The closure itself, not the case: one attribute lookup less inside the timed
        # loop, which is measurable on a call of a few µs.
        self.step = _prepare(impl, shape, dtype, device, self.mode).step


class Inference(_Timed):
    """Forward only, no autograd: what a served model pays per layer call."""

    mode = "forward"

    def time_forward(self, impl, shape, dtype, device):
        self.step()


class Training(_Timed):
    """Forward and backward (dX, dW, db): a training step's work for the layer."""

    mode = "forward_backward"

    def time_forward_backward(self, impl, shape, dtype, device):
        self.step()


class RelativeToTorch:
    """Time per call over torch's own ``F.linear`` on inputs of the same shape, dtype and mode.

    The metric of ``linbench gate``.  A shared machine has episodes in which everything
    runs slower for a fraction of a second, while a case's time over F.linear's,
    measured in alternating blocks of calls, holds still.  Absolute times of two
    commits agree only when the episodes happen to miss both; a ratio measured block
    by block cancels them.  The reference is built here from torch alone, never from
    the registry, so a change to any implementation (f_linear too) shows.

    Measured on one thread, whatever ``$LINBENCH_THREADS`` says (the timed benchmarks
    keep the matrix's count).  On a shared machine a 2-thread op's time over a 1-thread
    op's swings with the neighbours for tens of seconds at a time, so the same case's
    ratio moved 3x from one process to the next at 2 threads and a few percent at one.
    What a 1-thread ratio cannot see is how an implementation scales over threads:
    wall time, in the matrix's thread count, shows that.

    Each round returns its block ratios as samples, in the form asv's runner uses for
    timings (``{"samples", "number"}``), so asv keeps every block's ratio across
    rounds (``--record-samples``) and records their median.  Recorded in the history
    by every sweep, and the metric ``linbench gate`` compares.
    """

    params = [IMPLS, SHAPES, DTYPES, DEVICES, MODES]
    param_names = ["impl", "shape", "dtype", "device", "mode"]
    block_seconds = 2e-3  # per block of calls: well inside one episode
    # Block pairs per round: a count fixed for each case, so a round's samples can be
    # told apart from the next round's (linbench gate compares processes, not only
    # blocks).  A long call fills its block alone, and its ratio varies less, so such
    # cases get fewer blocks: the count follows the case's estimated time (never the
    # measured one, which would differ between rounds), within these bounds.
    blocks = 50
    # A long call (tens of ms) varies little from block to block; four pairs keep the
    # default sweep's largest cases under half a second each instead of two.
    min_blocks = 4
    threads = 1
    # Seconds of blocks per case: the history takes 0.1 (a quarter of the default
    # sweep's time went to this metric at 0.25); linbench gate sets 0.25 for its
    # significance test (LINBENCH_RATIO_SECONDS).
    seconds_per_case = float(os.environ.get("LINBENCH_RATIO_SECONDS", "0.1"))

    def setup(self, impl, shape, dtype, device, mode):
        torch.set_num_threads(self.threads)  # this case's own process (asv forks one per case)
        self.step = _prepare(impl, shape, dtype, device, mode).step
        self.reference = _torch_linear_step(shape, dtype, device, mode)
        self.n_blocks = _n_blocks(shape, dtype, device, mode, self.threads, self.seconds_per_case,
                                  self.block_seconds, self.min_blocks, self.blocks)

    def track_ratio(self, impl, shape, dtype, device, mode):
        return {"samples": _block_ratios(self.step, self.reference, self.n_blocks, self.block_seconds), "number": 1}

    track_ratio.unit = "ratio"


def _block_ratios(step, ref, n_blocks: int, block_seconds: float) -> list[float]:
    """``n_blocks`` ratios of ``step``'s time over ``ref``'s, each over alternating blocks of calls."""
    clock = bench.sync_clock

    def block(fn, n):
        t0 = clock()
        for _ in range(n):
            fn()
        return clock() - t0

    n = _calls_per_block(step, ref, block_seconds, clock)
    ratios = []
    for _ in range(n_blocks):
        # Alternate which goes first, so neither always finds the caches as the other left them.
        if len(ratios) % 2:
            r = block(ref, n)
            s = block(step, n)
        else:
            s = block(step, n)
            r = block(ref, n)
        ratios.append(s / r)
    return ratios


def _calls_per_block(step, ref, block_seconds: float, clock, warmup_seconds: float = 0.03) -> int:
    """Calls per block, so that the slower of ``step`` and ``ref`` fills ``block_seconds``; also
    the warm-up (at least ``warmup_seconds``).

    Timed in batches that double, the clock read once per batch: the clock waits for the
    GPU, and read after every call it would add a synchronisation to each, so a
    launch-bound CUDA call would be estimated at its launch plus a round trip, and its
    blocks would come out far shorter than ``block_seconds`` (where the two synchronisations
    of each block then pull the ratio toward 1).
    """
    n, spent = 1, 0.0
    while True:
        t0 = clock()
        for _ in range(n):
            step()
        t1 = clock()
        for _ in range(n):
            ref()
        t2 = clock()
        spent += t2 - t0
        per_call = max(t1 - t0, t2 - t1) / n
        if spent >= warmup_seconds:
            return max(1, int(block_seconds / max(per_call, 1e-9)))
        # Double, but stop near the warm-up's end: a doubling past it spent up to as much
        # again (a fifth of a small case's time went to warming up).
        n = max(n, min(2 * n, math.ceil((warmup_seconds - spent) / max((t2 - t0) / n, 1e-9))))


def _n_blocks(shape, dtype, device, mode, threads, seconds, block_seconds, lo, hi) -> int:
    # From the case's estimated time, never the measured one (which differs between
    # rounds): a fixed count per case tells one process's samples from the next one's.
    est = sweep.estimated_seconds(sweep.parse_shape(shape), dtype, device, mode)
    if device == "cpu":  # the estimate assumes every core; on fewer threads a CPU call takes longer
        est *= max(1, sweep.thread_count() // threads)
    return max(lo, min(hi, int(seconds / (2 * max(block_seconds, est)))))


class Speedup:
    """The first screen's answer: the baseline's time per call over this implementation's.

    Both run in the same process, in alternating blocks of calls (as RelativeToTorch
    against F.linear), so a slow spell of a shared machine slows both alike, and at the
    matrix's thread count, which is what a user runs.  Wall times of separate processes
    cannot give this: they put addmm at 1.86x nn_linear on the very same GEMM.

    ``setup_cache`` times every case of the sweep's speedup dtypes in
    ``bench.SPEEDUP_PROCESSES`` worker processes (``_speedup_worker``), one after the
    other, each over every case (the second in reverse order, so a drift of the machine
    meets the cases in another order), and keeps each process's median block ratio.
    Those medians are the samples asv records: the page's interval spans the spread
    between processes (``report.load.process_spread``), not only within one.  One
    worker for all cases instead of one asv process per case and round: the start of a
    process and of its thread pool cost more than a small case's blocks.  A case that
    crashes or hangs a worker fails alone; a fresh worker goes on from the next case.

    The baseline's own row is the null control: the baseline against a second instance
    of itself, timed the same way; its spread is the case's measured noise floor, and it
    widens every other interval of that case.  Above 1: faster than the baseline.
    asv cannot tell setup_cache which cases ``-b`` selected: ``$LINBENCH_SELECT``
    (a regex over the benchmark names, as ``-b``; linbench run sets it per chunk)
    narrows the cases timed, else the sweep's every speedup case is.
    """

    params = [IMPLS, SHAPES, DTYPES, DEVICES, MODES]
    param_names = ["impl", "shape", "dtype", "device", "mode"]
    # A block lasts at least this long, longer when one call does.
    block_seconds = 2e-3

    def setup_cache(self):
        return _measure_speedups(self.block_seconds)

    setup_cache.timeout = 3600

    def setup(self, measured, impl, shape, dtype, device, mode):
        got = _cached_case(measured, (impl, shape, dtype, device, mode), "speedup cases")
        # A case whose check fails is failed here too, as in the timed benchmarks.
        bench.check_case(linear_impls.get(impl), sweep.parse_shape(shape), dtype, device, mode)
        self.samples = got["medians"]

    def track_speedup(self, measured, impl, shape, dtype, device, mode):
        return {"samples": self.samples, "number": 1}

    track_speedup.unit = "speedup"


# Block pairs per case and process: a long call varies little from block to block, so the
# count follows the case's estimated time (as the ratio's), within these bounds.
SPEEDUP_MIN_BLOCKS, SPEEDUP_SECONDS_PER_CASE = 4, 0.1
# The block pairs of a case over all its processes: each process takes its share (9 in each of
# four), so a fourth process adds what tells runs apart (the spread between processes), not time.
SPEEDUP_TOTAL_BLOCKS = 36
# A compiled variant compiles again in every process that times it (seconds each): it runs in
# this many of the processes, its interval spanning fewer.
SPEEDUP_COMPILED_PROCESSES = 2
_SPEEDUP_CASE_TIMEOUT_S = 300.0
_SPEEDUP_MAX_RESTARTS = 5
# The worker: this file, imported as a plain module (asv imports it as part of the
# benchmark folder's package), so the compiled variants register as they do here.
_WORKER = "import sys; sys.path.insert(0, sys.argv[1]); import bench_linear; " \
          "sys.exit(bench_linear._speedup_worker(sys.argv[2], sys.argv[3]))"


def _case_key(impl, shape, dtype, device, mode) -> str:
    """A case in the setup_caches' dicts and the op traces' files: ``impl|shape|dtype|device|mode``
    (``linear_impls.dispatch.case_key``'s format, spelled here for commits older than it)."""
    return f"{impl}|{shape}|{dtype}|{device}|{mode}"


def _cached_case(cache: dict, case: tuple, what: str) -> dict:
    """One case's entry in a setup_cache's ``{"sweep", "skipped", "cases"}`` (or
    ``{"unavailable"}``): n/a with the reason where it was not measured, failed where it
    raised or crashed."""
    if "unavailable" in cache:
        raise NotImplementedError(cache["unavailable"])
    key = _case_key(*case)
    if key in cache["skipped"]:
        raise NotImplementedError(cache["skipped"][key])
    got = cache["cases"].get(key)
    if got is None:
        raise NotImplementedError(f"not among the {cache['sweep']} sweep's {what} selected (${SELECT_ENV})")
    if "error" in got:
        raise RuntimeError(f"{key}: {got['error']}")
    return got


def _selected_cases(family: str, method: str, sweep_def, dtypes) -> tuple[list[tuple], dict[str, str]]:
    """The sweep's cases of ``family`` in ``dtypes`` that ``$LINBENCH_SELECT`` selects (a regex
    over asv's benchmark names, as ``-b``; every one when unset), as (impl, shape, dtype,
    device, mode), and the skipped ones with their reasons.  Compiled variants on the
    sweep's compile subset only."""
    import re

    select = os.environ.get(SELECT_ENV, "").strip()
    pattern = re.compile(select) if select else None
    cases, skipped = [], {}
    for impl in IMPLS:
        record = linear_impls.get(impl)
        if getattr(record, "untimed", None):
            continue
        is_compiled = _compiled is not None and _compiled.is_compiled(impl)
        for shape, dtype, device, mode in itertools.product(sweep_def.shapes, dtypes, sweep.available_devices(),
                                                            MODES):
            if dtype not in sweep_def.dtypes or (is_compiled and not sweep_def.in_compile_subset(shape, dtype, mode)):
                continue
            name = f"bench_linear.{family}.{method}({impl!r}, {shape!r}, {dtype!r}, {device!r}, {mode!r})"
            if pattern is not None and not pattern.search(name):
                continue
            reason = sweep.skip_reason(record, sweep.parse_shape(shape), dtype, device, mode, sweep_def)
            if reason:
                skipped[_case_key(impl, shape, dtype, device, mode)] = reason
            else:
                cases.append((impl, shape, dtype, device, mode))
    return cases, skipped


def _speedup_cases() -> tuple[list[list], dict[str, str], str]:
    """The selected speedup cases, each with its block count, and the skipped ones."""
    sweep_def = sweep.current_sweep()
    cases, skipped = _selected_cases("Speedup", "track_speedup", sweep_def, sweep_def.speedup_dtypes)
    most = max(SPEEDUP_MIN_BLOCKS, min(bench.SPEEDUP_BLOCKS, SPEEDUP_TOTAL_BLOCKS // bench.SPEEDUP_PROCESSES))
    return [[*c, _n_blocks(*c[1:], sweep.thread_count(), SPEEDUP_SECONDS_PER_CASE, Speedup.block_seconds,
                           SPEEDUP_MIN_BLOCKS, most)] for c in cases], skipped, _ref(sweep_def)


def _is_compiled(impl: str) -> bool:
    return _compiled is not None and _compiled.is_compiled(impl)


def _measure_speedups(block_seconds: float) -> dict:
    """Every selected case in ``bench.SPEEDUP_PROCESSES`` workers: ``{"sweep", "skipped",
    "cases": {key: {"medians": [one per process]} or {"error": reason}}}``."""
    if _supervise is None:
        return {"unavailable": "this commit's linear_impls predates the speedup worker"}
    import json
    import tempfile
    from pathlib import Path

    cases, skipped, sweep_name = _speedup_cases()
    medians: dict[str, list[float]] = {_case_key(*c[:5]): [] for c in cases}
    errors: dict[str, str] = {}
    here = str(Path(__file__).resolve().parent)
    n = bench.SPEEDUP_PROCESSES

    def log(line):
        print(line, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="linbench-speedups-") as tmp:
        for p in range(n):
            # Every other process takes the cases backwards: a slow spell of the machine,
            # or its drift, then meets different cases in each.
            order = [c for c in (cases if p % 2 == 0 else cases[::-1]) if _case_key(*c[:5]) not in errors
                     and (p < SPEEDUP_COMPILED_PROCESSES or not _is_compiled(c[0]))]
            if not order:
                continue
            by_key = {_case_key(*c[:5]): c for c in order}
            workdir = Path(tmp) / f"process{p + 1}"
            workdir.mkdir()

            def command(keys, progress, workdir=workdir, by_key=by_key):
                spec = workdir / f"cases-{progress.stem}.json"
                spec.write_text(json.dumps({"sweep": sweep_name, "block_seconds": block_seconds,
                                            "cases": [by_key[k] for k in keys]}))
                return [sys.executable, "-c", _WORKER, here, str(spec), str(progress)]

            t0 = time.perf_counter()
            got = _supervise.run_cases(list(by_key), command, workdir, env=dict(os.environ),
                                      case_timeout=_SPEEDUP_CASE_TIMEOUT_S, max_restarts=_SPEEDUP_MAX_RESTARTS,
                                      label=f"speedups, process {p + 1} of {n}", log=log)
            for key, r in got.items():
                if "error" in r:
                    errors[key] = r["error"]
                else:
                    medians[key].append(r["median"])
            log(f"linbench: speedups, process {p + 1} of {n}: {len(got)} cases in {time.perf_counter() - t0:.0f} s")
    return {"sweep": sweep_name, "skipped": skipped,
            "cases": {k: {"error": errors[k]} if k in errors else {"medians": v} for k, v in medians.items()}}


def _speedup_worker(cases_file: str, progress_file: str) -> int:
    """Time each case of ``cases_file`` against a fresh instance of the baseline, in
    alternating blocks, writing the supervisor's protocol (``linear_impls.supervise``).

    Each case runs in a child forked from this process (``supervise.in_child``), which
    has imported torch and run no op: every case starts from the same heap.  In one
    long-lived process, memory freed by earlier cases served one instance's large
    temporaries from the heap while the other's came from fresh mmaps, a page fault per
    4 KiB: 1x4096x4096 training steps read 4-5x apart between two instances of one
    implementation, in some processes and not others.  A child that crashes costs its
    case alone.
    """
    import json
    from pathlib import Path

    spec = json.loads(Path(cases_file).read_text())
    with open(progress_file, "a", buffering=1) as progress:
        for impl, shape, dtype, device, mode, n_blocks in spec["cases"]:
            key = _case_key(impl, shape, dtype, device, mode)
            progress.write(json.dumps({"start": key, "t": time.monotonic()}) + "\n")
            try:
                median = _supervise.in_child(lambda c=(impl, shape, dtype, device, mode, n_blocks): _speedup_case(
                    *c, spec["block_seconds"], spec["sweep"]))
                event = {"done": key, "median": median, "t": time.monotonic()}
            except Exception as exc:  # a faulty implementation: its case fails, the others go on
                event = {"error": key, "reason": str(exc)}
            progress.write(json.dumps(event) + "\n")
    return 0


def _speedup_case(impl, shape, dtype, device, mode, n_blocks, block_seconds, sweep_name) -> float:
    """One case's median block ratio: the baseline's time over the implementation's."""
    import statistics

    case = bench.prepare(impl, shape, dtype, device, mode, check=False, sweep_def=_sweep_of(sweep_name))
    # A step of its own, on inputs of its own: for the baseline's row, a second instance.
    base_step = bench.build_step(linear_impls.get(linear_impls.baseline()), sweep.parse_shape(shape), dtype,
                                 device, mode, seed=1)
    return statistics.median(_block_ratios(base_step, case.step, n_blocks, block_seconds))


class Dispatch:
    """The aten ops one call of each case dispatches to (``linear_impls.dispatch``): no
    timing, the same in every run of one commit and torch.

    ``setup_cache`` traces every selected case (``$LINBENCH_SELECT``, as the speedups; the
    sweep's instruction dtypes), each in a child forked from its process, and keeps each
    case's op sequence, intermediate bytes and copies beside the asv results
    (``<results>/<machine>/dispatch/``), where the page and the history read them.  asv
    records the number of ops per call, so a change of dispatch shows in asv's graphs too.
    """

    params = [IMPLS, SHAPES, DTYPES, DEVICES, MODES]
    param_names = ["impl", "shape", "dtype", "device", "mode"]

    def setup_cache(self):
        if _dispatch is None or not hasattr(_supervise, "in_child"):
            return {"unavailable": "this commit's linear_impls predates the op traces"}
        sweep_def = sweep.current_sweep()
        cases, skipped = _selected_cases("Dispatch", "track_ops", sweep_def, sweep_def.instruction_dtypes)
        # A compiled variant's ops are inductor's generated code, not aten calls to trace.
        cases = [c for c in cases if _compiled is None or not _compiled.is_compiled(c[0])]
        # The first dispatch mode a process enters imports torch._dynamo (about a second):
        # imported here, once, each forked child finds it loaded.  Pure Python: no thread starts.
        import torch._dynamo  # noqa: F401
        traced: dict[str, dict] = {}
        for impl, shape, dtype, device, mode in cases:
            key = _case_key(impl, shape, dtype, device, mode)
            try:
                traced[key] = _supervise.in_child(lambda c=(impl, shape, dtype, device, mode): _dispatch.summary(
                    _dispatch.trace(*c)))
            except Exception as exc:  # a faulty implementation: its case fails, the others go on
                traced[key] = {"error": str(exc)}
        commit, env_name = os.environ.get("ASV_COMMIT"), os.environ.get("ASV_ENV_NAME", "env")
        results = _results_dir()
        folder = os.environ.get(_dispatch.SIDECAR_ENV) or (results / _dispatch.SIDECAR if results else None)
        if folder is not None and commit:
            _dispatch.save(_dispatch.sidecar_file(folder, commit, env_name), commit, env_name,
                           {k: v for k, v in traced.items() if "error" not in v})
        return {"sweep": sweep_def.name, "skipped": skipped, "cases": traced}

    setup_cache.timeout = 1800

    def setup(self, traced, impl, shape, dtype, device, mode):
        self.n_ops = len(_cached_case(traced, (impl, shape, dtype, device, mode),
                                      "traced cases (its instruction dtypes)")["ops"])

    def track_ops(self, traced, impl, shape, dtype, device, mode):
        return self.n_ops

    track_ops.unit = "ops"


def _torch_linear_step(shape_id, dtype, device, mode):
    """``F.linear`` on fresh inputs shaped like the case's, doing the case's work (forward, or a training step)."""
    shape = sweep.parse_shape(shape_id)
    td = sweep.dtype_of(dtype)
    training = mode == "forward_backward"
    gen = torch.Generator().manual_seed(1)

    def rand(*size):
        return torch.randn(size, generator=gen).to(device=device, dtype=td).requires_grad_(training)

    x, w, b = rand(*shape.input_shape), rand(shape.out_features, shape.in_features), rand(shape.out_features)
    linear = torch.nn.functional.linear
    if not training:
        return lambda: linear(x, w, b)
    gy = torch.randn(*shape.batch, shape.out_features, generator=gen).to(device=device, dtype=td)

    def step():
        x.grad = w.grad = b.grad = None
        linear(x, w, b).backward(gy)

    return step


class Instructions:
    """Instructions per call on the CPU, counted under callgrind: the same in every run of a commit.

    ``setup_cache`` counts every CPU case of the sweep (its ``instruction_dtypes``, up to
    its ``max_call_instructions``) in one valgrind process, and keeps each case's
    per-function counts beside the asv results (``linear_impls.instructions``), so a
    changed count can be traced to the functions that changed.  n/a without valgrind.
    asv cannot tell setup_cache which cases ``-b`` selected, so it counts the whole
    sweep; ``$LINBENCH_INSTRUCTIONS_SELECT`` (a regex, as ``-b``) narrows it.
    """

    params = [IMPLS, SHAPES, DTYPES, DEVICES, MODES]
    param_names = ["impl", "shape", "dtype", "device", "mode"]

    def setup_cache(self):
        if _instructions is None:
            return {"unavailable": "this commit's linear_impls predates instruction counts"}
        reason = _instructions.unavailable_reason()
        if reason:
            return {"unavailable": reason}
        sweep_def = sweep.current_sweep()
        impls = [linear_impls.get(n) for n in IMPLS]
        cases, skipped = _instructions.select_cases(sweep_def, impls,
                                                    os.environ.get(_instructions.SELECT_ENV) or None)
        results = _instructions.measure(cases, _ref(sweep_def))
        folder, commit = _callgrind_dir(), os.environ.get("ASV_COMMIT")
        if folder is not None and commit:
            _functioncounts.save(folder, commit, os.environ.get("ASV_ENV_NAME", "env"), results,
                                 _functioncounts.host_info())
        return {"sweep": sweep_def.name, "skipped": skipped,
                "counts": {k: r.get("instructions", r.get("error")) for k, r in results.items()}}

    # Counting a sweep under valgrind takes minutes; asv's default timeout is two.
    setup_cache.timeout = 3600

    def setup(self, counts, impl, shape, dtype, device, mode):
        if device != "cpu":
            raise NotImplementedError("instructions are counted on the CPU only")
        if "unavailable" in counts:
            raise NotImplementedError(counts["unavailable"])
        key = _instructions.case_key(impl, shape, dtype, mode)
        if key in counts["skipped"]:
            raise NotImplementedError(counts["skipped"][key])
        if key not in counts["counts"]:
            raise NotImplementedError(f"not in the {counts['sweep']!r} sweep")
        value = counts["counts"][key]
        if isinstance(value, str):
            raise RuntimeError(f"{key}: {value}")
        # A case whose check fails is failed here too, as in the timed benchmarks.
        bench.check_case(linear_impls.get(impl), sweep.parse_shape(shape), dtype, "cpu", mode)
        self.value = value

    def track_instructions(self, counts, impl, shape, dtype, device, mode):
        return self.value

    track_instructions.unit = "instructions"


def _results_dir():
    """asv's results folder (asv.conf.json's ``results_dir``), or None outside asv."""
    import re
    from pathlib import Path

    conf_dir = os.environ.get("ASV_CONF_DIR")
    if not conf_dir:
        return None
    try:
        text = (Path(conf_dir) / "asv.conf.json").read_text()
    except OSError:
        return None
    m = re.search(r'"results_dir"\s*:\s*"([^"]+)"', text)
    return Path(conf_dir) / (m.group(1) if m else "results")


def _callgrind_dir():
    """Where per-function counts go: ``$LINBENCH_CALLGRIND_DIR``, else ``callgrind/`` in asv's results folder."""
    from pathlib import Path

    if os.environ.get(_functioncounts.SIDECAR_ENV):
        return Path(os.environ[_functioncounts.SIDECAR_ENV])
    results = _results_dir()
    return None if results is None else _functioncounts.sidecar_dir(results)


def _no_compiled_peak(impl):
    if _compiled is not None and _compiled.is_compiled(impl):
        raise NotImplementedError("a compiled variant's peak would be the compiler's")


class HostMemory:
    """Peak resident memory of a process running one call on the CPU."""

    params = [IMPLS, SHAPES, DTYPES, MODES]
    param_names = ["impl", "shape", "dtype", "mode"]

    def setup(self, impl, shape, dtype, mode):
        if dtype not in sweep.current_sweep().memory_dtypes:
            raise NotImplementedError(f"{dtype}: memory is measured in {sweep.current_sweep().memory_dtypes}")
        _no_compiled_peak(impl)
        # No check here: its float64 reference would dominate the peak.  The timed
        # benchmarks check the same cases.
        self.case = _prepare(impl, shape, dtype, "cpu", mode, check=False)

    def peakmem_step(self, impl, shape, dtype, mode):
        self.case.step()


class DeviceMemory:
    """CUDA memory one call allocates at its peak beyond what was allocated just before it, in
    bytes (n/a without CUDA): the call's own temporaries and outputs, not the resident x, W,
    b or cuBLAS's persistent workspace (``linear_impls.gpu.call_peak_bytes`` says why)."""

    params = [IMPLS, SHAPES, DTYPES, MODES]
    param_names = ["impl", "shape", "dtype", "mode"]

    def setup(self, impl, shape, dtype, mode):
        if dtype not in sweep.current_sweep().memory_dtypes:
            raise NotImplementedError(f"{dtype}: memory is measured in {sweep.current_sweep().memory_dtypes}")
        if _gpu is None:
            raise NotImplementedError("this commit measures no call's own device memory")
        _no_compiled_peak(impl)
        self.case = _prepare(impl, shape, dtype, "cuda", mode, check=False)

    def track_peak_bytes(self, impl, shape, dtype, mode):
        return _gpu.call_peak_bytes(self.case.step)

    track_peak_bytes.unit = "bytes"


class Ceilings:
    """The machine's compute roof for the summary page's roofline: a large GEMM's rate per
    dtype (``linear_impls.ceilings``)."""

    params = [DTYPES, DEVICES]
    param_names = ["dtype", "device"]
    timeout = 300

    def setup(self, dtype, device):
        _ceiling_available(device)
        if dtype not in sweep.current_sweep().dtypes:
            raise NotImplementedError(f"{dtype} is not in the {sweep.current_sweep().name!r} sweep")

    def track_peak_gflops(self, dtype, device):
        return _ceilings.peak_gflops(dtype, device)[0]

    track_peak_gflops.unit = "GFLOP/s"


class MemoryBandwidth:
    """The machine's memory roof for the roofline: a streaming triad's bandwidth, one per device."""

    params = [DEVICES]
    param_names = ["device"]
    timeout = 300

    def setup(self, device):
        _ceiling_available(device)

    def track_bandwidth_gbs(self, device):
        return _ceilings.bandwidth_gbs(device)

    track_bandwidth_gbs.unit = "GB/s"


class CacheBandwidth:
    """The GPU's L2: the roof of a case whose tensors it holds (``linear_impls.ceilings`` says
    why); n/a on a CPU."""

    params = [DEVICES]
    param_names = ["device"]
    timeout = 300

    def setup(self, device):
        _ceiling_available(device)
        if not hasattr(_ceilings, "cache_bandwidth"):
            raise NotImplementedError("this commit measures no cache bandwidth")
        if device != "cuda":
            raise NotImplementedError("the cache's bandwidth is a roof on CUDA only")
        self.gbs, self.cache_bytes = _ceilings.cache_bandwidth(device)

    def track_cache_bandwidth_gbs(self, device):
        return self.gbs

    track_cache_bandwidth_gbs.unit = "GB/s"

    def track_cache_bytes(self, device):
        return self.cache_bytes

    track_cache_bytes.unit = "bytes"


def _ceiling_available(device):
    if _ceilings is None:
        raise NotImplementedError("this commit measures no ceilings")
    if device not in sweep.available_devices():
        raise NotImplementedError(f"no {device} device here")


class CompileCost:
    """What compiling costs a compiled variant, per case of the sweep's compile subset:
    cold (empty inductor cache) and warm (cache kept) compile time, graphs and graph breaks.

    Measured once per sweep in ``setup_cache`` (one process, the cases in turn): a cold
    compile of mul_sum takes tens of seconds here, which a process per metric would pay four
    times.  The first call of the eager implementation is subtracted from the compiled one's.
    """

    params = [COMPILED or ["none"], SHAPES, DTYPES, DEVICES, MODES]
    param_names = ["impl", "shape", "dtype", "device", "mode"]

    def setup_cache(self):
        sweep_def = sweep.current_sweep()
        out = {}
        for impl in COMPILED:
            for shape in sweep_def.compile_shapes:
                for dtype in sweep_def.compile_dtypes:
                    for device in sweep.available_devices():
                        for mode in sweep_def.compile_modes:
                            key = f"{impl} {shape} {dtype} {device} {mode}"
                            reason = sweep.skip_reason(linear_impls.get(impl), sweep.parse_shape(shape), dtype,
                                                       device, mode, sweep_def)
                            try:
                                out[key] = reason or bench.compile_cost(impl, shape, dtype, device, mode)
                            except Exception as exc:  # the variant fails to compile: that case fails
                                out[key] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        return out

    setup_cache.timeout = 1800

    def setup(self, costs, impl, shape, dtype, device, mode):
        got = costs.get(f"{impl} {shape} {dtype} {device} {mode}")
        if got is None:
            raise NotImplementedError("not in the sweep's compile subset")
        if isinstance(got, str):
            raise NotImplementedError(got)
        if "error" in got:
            raise RuntimeError(got["error"])
        self.cost = got

    def track_cold_seconds(self, costs, impl, shape, dtype, device, mode):
        return self.cost["cold"]

    track_cold_seconds.unit = "seconds"

    def track_warm_seconds(self, costs, impl, shape, dtype, device, mode):
        return self.cost["warm"]

    track_warm_seconds.unit = "seconds"

    def track_graphs(self, costs, impl, shape, dtype, device, mode):
        return self.cost["graphs"]

    track_graphs.unit = "graphs"

    def track_graph_breaks(self, costs, impl, shape, dtype, device, mode):
        return self.cost["graph_breaks"]

    track_graph_breaks.unit = "graph breaks"


class Environment:
    """What the timings ran under, recorded with every result (with ``EnvironmentPrecision``
    and ``EnvironmentGpu``), so a change of any shows beside the history."""

    def track_inductor_compile_threads(self):
        return int(os.environ.get("TORCHINDUCTOR_COMPILE_THREADS", "0"))

    track_inductor_compile_threads.unit = "threads"

    def track_threads(self):
        return torch.get_num_threads()

    track_threads.unit = "threads"



class EnvironmentPrecision:
    """The matmul precision flags every case ran under (``linear_impls.gpu.PINNED`` says why
    they are pinned): 1 where a GEMM may compute below full precision."""

    def setup(self):
        if _gpu is None:
            raise NotImplementedError("this commit pins no precision flags")
        self.flags = _gpu.reduced_precision()

    def track_tf32(self):
        return self.flags["tf32"]

    track_tf32.unit = "flag"

    def track_reduced_precision_reduction(self):
        return self.flags["reduced_precision_reduction"]

    track_reduced_precision_reduction.unit = "flag"


class EnvironmentGpu:
    """The GPU the CUDA cases ran on (n/a without one): its model shows as these together
    (an H100 SXM: compute capability 9.0, 132 multiprocessors, 79.1 GiB), so a change of GPU
    or driver in a runner pool shows beside the history instead of as a step in it."""

    def setup(self):
        if "cuda" not in sweep.available_devices():
            raise NotImplementedError("no CUDA device here")
        if _gpu is None:
            raise NotImplementedError("this commit records no GPU facts")
        self.facts = _gpu.device_facts()

    def track_cuda_capability(self):
        return self.facts["capability"]

    track_cuda_capability.unit = "version"

    def track_cuda_multiprocessors(self):
        return self.facts["multiprocessors"]

    track_cuda_multiprocessors.unit = "multiprocessors"

    def track_cuda_memory_gib(self):
        return self.facts["memory_gib"]

    track_cuda_memory_gib.unit = "GiB"

    def track_cuda_runtime(self):
        return self.facts["cuda_runtime"]

    track_cuda_runtime.unit = "version"

    def track_cuda_driver(self):
        # torch reports no driver version on some builds: 0, never a failed benchmark.
        return self.facts["cuda_driver"] or 0

    track_cuda_driver.unit = "version"


