"""Running the checks for ``linbench check``: one worker process per implementation.

An implementation that segfaults, aborts, hangs or exhausts memory must not take
the others down, so each runs its checks in a child process that streams one JSON
line per case.  The parent enforces a time limit per case and a memory limit per
worker (its data segment: ``_limit_memory`` says why); when a worker dies, the case
it was on is recorded as failed with the reason (signal, timeout, out of memory) and
a new worker resumes from the next case.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import checks, sweep
from .registry import Impl

STATUS_ORDER = ("fail", "skip", "pass")


@dataclass
class CheckPlan:
    impl: Impl
    devices: list[str]
    dtypes: tuple[str, ...]
    shapes: tuple[str, ...] = ()  # the user's own shapes, checked besides the case set
    cases: list[tuple[checks.CheckCase, str, str, str]] = field(default_factory=list)

    def __post_init__(self):
        extra = tuple(checks.case_for_shape(sweep.parse_shape(s)) for s in self.shapes)
        self.cases = list(checks.iter_checks(self.impl, self.devices, self.dtypes, checks.CASES + extra))


def _blank(plan: CheckPlan, index: int, status: str, reason: str) -> checks.CheckResult:
    case, dtype, device, check = plan.cases[index]
    return checks.CheckResult.of(plan.impl.name, case, dtype, device, check, status, reason)


def _signal_reason(returncode: int, memory_limit: int | None) -> str:
    if returncode < 0:
        sig = -returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        desc = signal.strsignal(sig) or name
        if sig == signal.SIGKILL:
            return f"killed by {name} (out of memory? the kernel's OOM killer sends it)"
        return f"crashed: killed by {name} ({desc})"
    return f"worker exited with status {returncode} mid-case"


def _limit_memory(limit_bytes: int | None) -> Callable[[], None] | None:
    if not limit_bytes:
        return None

    def apply():
        # An allocation past this fails inside torch (a RuntimeError the check reports as
        # out of memory) instead of pushing the machine into swap.  RLIMIT_DATA counts the
        # writable private memory a process allocates (heap and anonymous mmaps: tensors),
        # not address space merely reserved: creating a CUDA context reserves tens of GiB of
        # it, which RLIMIT_AS would refuse, failing every CUDA check as out of memory.
        resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))

    return apply


def run_plan(plan: CheckPlan, *, timeout: float, memory_limit: int | None,
             on_result: Callable[[checks.CheckResult], None] | None = None,
             threads: int | None = None) -> list[checks.CheckResult]:
    """All check results of one implementation, however its worker ends.

    A worker that dies mid-case is replaced from the next case on; after
    ``MAX_CRASHES`` deaths in a row the rest of the cases are failed unrun, so one
    implementation that crashes everywhere costs seconds, not a torch start-up per case.
    """
    results: list[checks.CheckResult | None] = [None] * len(plan.cases)
    start, crashes = 0, 0
    while start < len(plan.cases):
        nxt, crash = _run_worker(plan, start, results, timeout=timeout, memory_limit=memory_limit,
                                 on_result=on_result, threads=threads)
        # A crash right at the first case of a worker is a crash "in a row".
        crashes = crashes + 1 if crash and nxt == start + 1 else int(bool(crash))
        start = nxt
        if crash and crashes >= MAX_CRASHES:
            for index in range(start, len(plan.cases)):
                _record(plan, results, index, "fail",
                        f"not run: the implementation killed its worker {crashes} times in a row (last: {crash})",
                        on_result)
            break
    return [r for r in results if r is not None]


MAX_CRASHES = 3
# Importing torch in a fresh worker: not counted against the per-case limit.
STARTUP_SECONDS = 120.0


def _run_worker(plan, start, results, *, timeout, memory_limit, on_result, threads) -> tuple[int, str]:
    """Run a worker from case ``start``; returns (where the next must resume, crash reason or "")."""
    cmd = [sys.executable, "-m", "linear_impls", "_check-worker", "--impl", plan.impl.name,
           "--start", str(start)]
    for d in plan.devices:
        cmd += ["--device", d]
    for d in plan.dtypes:
        cmd += ["--dtype", d]
    for shape in plan.shapes:
        cmd += ["--shape", shape]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    # stderr to a file, not a pipe: an implementation that prints a lot must not block its worker.
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, stdin=subprocess.DEVNULL,
                                preexec_fn=_limit_memory(memory_limit), env=env)
        try:
            current, timed_out = _read_results(proc, plan, start, results, timeout, on_result)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
        if timed_out:
            reason = f"timed out: no result within {timeout:g} s"
            _record(plan, results, current, "fail", reason, on_result)
            return current + 1, reason
        if current >= len(plan.cases):
            return current, ""
        errfile.seek(0)
        err = errfile.read().decode(errors="replace").strip().splitlines()
    reason = _signal_reason(proc.returncode, memory_limit)
    if err:
        reason += f"; last output: {err[-1][:300]}"
    _record(plan, results, current, "fail", reason, on_result)
    return current + 1, reason


def _read_results(proc, plan, start, results, timeout, on_result) -> tuple[int, bool]:
    """Collect a worker's result lines; returns (next case index, whether it timed out)."""
    current = start
    buf = b""
    deadline = time.monotonic() + STARTUP_SECONDS
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return current, True
            if not sel.select(timeout=remaining):
                continue
            chunk = os.read(proc.stdout.fileno(), 1 << 16)
            if not chunk:
                return current, False
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict) and msg.get("ready"):
                    deadline = time.monotonic() + timeout  # imports done: the clock is the case's now
                    continue
                if not isinstance(msg, dict) or "index" not in msg:
                    continue
                res = checks.CheckResult(**msg["result"])
                results[msg["index"]] = res
                if on_result:
                    on_result(res)
                current = msg["index"] + 1
                deadline = time.monotonic() + timeout


def _record(plan, results, index, status, reason, on_result):
    res = _blank(plan, index, status, reason)
    results[index] = res
    if on_result:
        on_result(res)


def worker_main(impl: Impl, devices: list[str], dtypes: tuple[str, ...], start: int,
                shapes: tuple[str, ...] = ()) -> int:
    """The child: run cases from ``start`` on, one JSON line each, flushed as it goes."""
    plan = CheckPlan(impl, devices, dtypes, shapes)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    # Keep the implementation's own prints off our result channel.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    out.write(json.dumps({"ready": 1}) + "\n")
    for index in range(start, len(plan.cases)):
        case, dtype, device, check = plan.cases[index]
        res = checks.run_check(impl, case, dtype, device, check)
        out.write(json.dumps({"index": index, "result": res.to_dict()}) + "\n")
    out.flush()
    return 0
