"""Running many cases in one worker process, and surviving the ones that kill it.

The instruction counts (one valgrind process), the interleaved speedups (a few
processes, each timing every case) and the checks (a process per implementation)
share one protocol: the worker appends a JSON line per event to a progress file
(``{"start": key}``, then ``{"done": key, ...}`` or ``{"error": key, "reason": ...}``);
the supervisor follows the file, kills the worker when one case runs past its
timeout, records the case in flight as failed with the reason, and starts a fresh
worker on the cases left.  A faulty implementation thus costs its own case, never
the rest.  The checks add a memory limit per worker and a cut-off after crashes in
a row.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def exit_reason(status: int | None) -> str:
    """A worker's exit status in words: ``exit status 3``, ``signal SIGKILL``."""
    if status is None:
        return "no exit status"
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"exit status {status}"


def limit_memory(limit_bytes: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` capping the worker's data segment at ``limit_bytes`` (None: no cap)."""
    if not limit_bytes:
        return None

    def apply():
        # An allocation past this fails inside torch (a RuntimeError the case reports as
        # out of memory) instead of pushing the machine into swap.  RLIMIT_DATA counts the
        # writable private memory a process allocates (heap and anonymous mmaps: tensors),
        # not address space merely reserved: creating a CUDA context reserves tens of GiB of
        # it, which RLIMIT_AS would refuse, failing every CUDA check as out of memory.
        resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))

    return apply


def death_reason(status: int | None) -> str:
    """Why a worker ended inside a case: ``the process died (signal SIGSEGV)``; a SIGKILL
    nobody here sent is most often the kernel's out-of-memory killer, and says so."""
    why = exit_reason(status)
    if status == -signal.SIGKILL:
        why += ": out of memory? the kernel's OOM killer sends it"
    return f"the process died ({why})"


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass
    proc.wait()


def follow(proc: subprocess.Popen, progress_file: Path, case_timeout: float, total: int,
           log: Callable[[str], None], label: str, *, startup_timeout: float | None = None,
           on_event: Callable[[dict], None] | None = None) -> tuple[list[dict], bool]:
    """Wait for the worker, printing progress every 15 s; kill it (its whole process group)
    when one case runs past ``case_timeout``, or when it writes nothing in its first
    ``startup_timeout`` s (its imports; ``case_timeout`` when None).  Each event goes to
    ``on_event`` as it arrives.  Returns its events and whether it hung."""
    events: list[dict] = []
    last_change = time.monotonic()
    last_report = time.monotonic()
    hung = False
    with open(progress_file) as f:
        while True:
            line = f.readline()
            if line.endswith("\n"):
                event = json.loads(line)
                events.append(event)
                if on_event is not None:
                    on_event(event)
                last_change = time.monotonic()
                if time.monotonic() - last_report > 15:
                    last_report = time.monotonic()
                    finished = sum("start" not in e for e in events)
                    log(f"linbench: {label}: {finished}/{total} cases")
                continue
            if proc.poll() is not None:
                break
            limit = case_timeout if events or startup_timeout is None else startup_timeout
            if time.monotonic() - last_change > limit:
                hung = True
                _kill_group(proc)
                break
            time.sleep(0.1)
    return events, hung


def run_cases(keys: Sequence[str], command: Callable[[list[str], Path], list[str]], workdir: Path, *,
              env: dict[str, str], case_timeout: float, max_restarts: int | None, label: str,
              log: Callable[[str], None], startup_timeout: float | None = None,
              max_in_a_row: int | None = None, memory_limit: int | None = None,
              on_result: Callable[[str, dict], None] | None = None) -> dict[str, dict]:
    """Run ``keys`` through workers until each has a result: ``{key: done event}`` or
    ``{key: {"error": reason}}``.

    ``command(todo, progress_file)`` is the worker's command line for the keys still to
    do; the worker must take them in that order.  A worker that dies or hangs in a case
    fails that case; one that fails before its first case (it cannot start) fails every
    case left with its log's last lines.  Bounds on the cost of a faulty implementation:
    ``max_restarts`` fresh workers in all (None: no bound), and ``max_in_a_row`` workers
    in a row that die in their first case (an implementation that crashes everywhere
    costs a few start-ups, not one per case), after which the cases left are failed
    unrun.  ``memory_limit`` caps each worker's data segment (:func:`limit_memory`);
    ``on_result(key, result)`` hears each result as it is known.
    """
    results: dict[str, dict] = {}

    def record(key: str, result: dict) -> None:
        results[key] = result
        if on_result is not None:
            on_result(key, result)

    def on_event(event: dict) -> None:
        if "done" in event:
            record(event["done"], event)
        elif "error" in event:
            record(event["error"], {"error": event["reason"]})

    todo = list(keys)
    attempt, in_a_row = 0, 0
    while todo:
        attempt += 1
        if max_restarts is not None and attempt > max_restarts + 1:
            for k in todo:
                record(k, {"error": f"not measured: the {label} worker failed {max_restarts + 1} times"})
            break
        progress_file = workdir / f"progress{attempt}.jsonl"
        progress_file.write_text("")
        log_file = workdir / f"worker{attempt}.log"
        with open(log_file, "w") as out:
            proc = subprocess.Popen(command(todo, progress_file), env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=limit_memory(memory_limit))
            try:
                events, hung = follow(proc, progress_file, case_timeout, len(todo), log, label,
                                      startup_timeout=startup_timeout, on_event=on_event)
            except BaseException:
                # Ctrl-C reaches only this process (the worker has a session of its own, so a
                # hung case can be killed with its children): take the worker down with us.
                _kill_group(proc)
                raise
        started = None
        for ev in events:
            if "start" in ev:
                started = ev["start"]
            elif "done" in ev or "error" in ev:
                started = None
        progressed = any("done" in e or "error" in e for e in events)
        last_words = log_file.read_text(errors="replace").strip().splitlines()[-3:]
        if started is not None:  # the worker died (or hung) inside this case
            reason = (f"timed out: no result in {case_timeout:g} s" if hung
                      else death_reason(proc.returncode))
            if last_words and not hung:
                reason += f"; last output: {last_words[-1][:300]}"
            record(started, {"error": reason})
            in_a_row = 1 if progressed else in_a_row + 1
            if max_in_a_row is not None and in_a_row >= max_in_a_row:
                for k in todo:
                    if k not in results:
                        record(k, {"error": f"not run: the implementation killed its worker {in_a_row} times "
                                            f"in a row (last: {reason})"})
        elif not progressed:  # it never reached a case (or ended without taking any): no restart helps
            why = f"no word in {startup_timeout or case_timeout:g} s" if hung else exit_reason(proc.returncode)
            for k in todo:
                record(k, {"error": f"the {label} worker failed to start ({why})"
                                    + (": " + " | ".join(last_words) if last_words else "")})
        todo = [k for k in todo if k not in results]
    return results


class ChildDied(RuntimeError):
    """The forked child of :func:`in_child` died before it returned (its reason in words)."""


def in_child(fn: Callable[[], object]) -> object:
    """``fn()`` in a child forked from this process; returns its result (JSON-able).

    A fault that kills the process (a segfault, an abort) raises :class:`ChildDied` here
    instead of ending the caller, and every call starts from the caller's heap: what one
    case freed cannot serve the next one's allocations.  Fork only from a process that
    has run no torch op: a child inheriting a half-copied thread pool can deadlock.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code = 1
        try:
            try:
                payload = json.dumps({"ok": fn()})
            except Exception as exc:  # the caller decides what an exception means
                payload = json.dumps({"raised": f"{type(exc).__name__}: {exc}"[:500]})
            with os.fdopen(write_end, "w") as out:
                out.write(payload)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as src:  # read before waiting: a large result fills the pipe
        text = src.read()
    _, status = os.waitpid(pid, 0)
    if status or not text:
        why = exit_reason(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
        raise ChildDied(f"the process died ({why})")
    got = json.loads(text)
    if "raised" in got:
        raise RuntimeError(got["raised"])
    return got["ok"]
