"""Running many cases in one worker process, and surviving the ones that kill it.

The instruction counts (one valgrind process) and the interleaved speedups (a few
processes, each timing every case) share one protocol: the worker appends a JSON
line per event to a progress file (``{"start": key}``, then ``{"done": key, ...}`` or
``{"error": key, "reason": ...}``); the supervisor follows the file, kills the worker
when one case runs past its timeout, records the case in flight as failed with the
reason, and starts a fresh worker on the cases left.  A faulty implementation thus
costs its own case, never the rest.
"""

from __future__ import annotations

import json
import os
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


def follow(proc: subprocess.Popen, progress_file: Path, case_timeout: float, total: int,
           log: Callable[[str], None], label: str) -> tuple[list[dict], bool]:
    """Wait for the worker, printing progress every 15 s; kill it (its whole process group)
    when one case runs past ``case_timeout``.  Returns its events and whether it hung."""
    events: list[dict] = []
    last_change = time.monotonic()
    last_report = time.monotonic()
    hung = False
    with open(progress_file) as f:
        while True:
            line = f.readline()
            if line.endswith("\n"):
                events.append(json.loads(line))
                last_change = time.monotonic()
                if time.monotonic() - last_report > 15:
                    last_report = time.monotonic()
                    finished = sum("start" not in e for e in events)
                    log(f"linbench: {label}: {finished}/{total} cases")
                continue
            if proc.poll() is not None:
                break
            if time.monotonic() - last_change > case_timeout:
                hung = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.1)
    return events, hung


def run_cases(keys: Sequence[str], command: Callable[[list[str], Path], list[str]], workdir: Path, *,
              env: dict[str, str], case_timeout: float, max_restarts: int, label: str,
              log: Callable[[str], None]) -> dict[str, dict]:
    """Run ``keys`` through workers until each has a result: ``{key: done event}`` or
    ``{key: {"error": reason}}``.

    ``command(todo, progress_file)`` is the worker's command line for the keys still to
    do; the worker must take them in that order.  A worker that dies or hangs in a case
    fails that case; one that fails before its first case (it cannot start) fails every
    case left with its log's last lines.
    """
    results: dict[str, dict] = {}
    todo = list(keys)
    attempt = 0
    while todo:
        attempt += 1
        if attempt > max_restarts + 1:
            for k in todo:
                results[k] = {"error": f"not measured: the {label} worker failed {max_restarts + 1} times"}
            break
        progress_file = workdir / f"progress{attempt}.jsonl"
        progress_file.write_text("")
        log_file = workdir / f"worker{attempt}.log"
        with open(log_file, "w") as out:
            proc = subprocess.Popen(command(todo, progress_file), env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            events, hung = follow(proc, progress_file, case_timeout, len(todo), log, label)
        started = None
        for ev in events:
            if "start" in ev:
                started = ev["start"]
            elif "done" in ev:
                results[ev["done"]] = ev
                started = None
            elif "error" in ev:
                results[ev["error"]] = {"error": ev["reason"]}
                started = None
        if started is not None:  # the worker died (or hung) inside this case
            results[started] = {"error": f"hung: no result in {case_timeout:.0f} s" if hung
                                else f"the process died ({exit_reason(proc.returncode)})"}
        elif not events and proc.returncode != 0:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-3:]
            for k in todo:
                results[k] = {"error": f"the {label} worker failed to start ({exit_reason(proc.returncode)}): "
                                       + " | ".join(tail)}
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
