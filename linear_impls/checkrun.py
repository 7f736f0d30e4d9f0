"""Running the checks for ``linbench check``: one worker process per implementation.

An implementation that segfaults, aborts, hangs or exhausts memory must not take
the others down, so each runs its checks in a child process under the supervisor the
speedups and the instruction counts use (``supervise``): a JSON line per case, a time
limit per case and a memory limit per worker (its data segment:
``supervise.limit_memory`` says why); when a worker dies, the case it was on is
recorded as failed with the reason (signal, timeout, out of memory) and a new worker
resumes from the next case.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import checks, supervise, sweep
from .registry import Impl


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


def run_plan(plan: CheckPlan, *, timeout: float, memory_limit: int | None,
             on_result: Callable[[checks.CheckResult], None] | None = None,
             threads: int | None = None) -> list[checks.CheckResult]:
    """All check results of one implementation, however its workers end (``supervise.run_cases``).

    A worker that dies mid-case is replaced from the next case on; after
    ``MAX_CRASHES`` deaths in a row the rest of the cases are failed unrun, so one
    implementation that crashes everywhere costs seconds, not a torch start-up per case.
    """
    keys = [str(i) for i in range(len(plan.cases))]
    results: dict[int, checks.CheckResult] = {}

    def heard(key: str, got: dict) -> None:
        index = int(key)
        res = (checks.CheckResult(**got["result"]) if "result" in got
               else _blank(plan, index, "fail", got["error"]))
        results[index] = res
        if on_result:
            on_result(res)

    def command(todo: list[str], progress_file: Path) -> list[str]:
        # The supervisor hands back the cases left, always the tail of the list: the worker
        # takes them from the first one on.
        cmd = [sys.executable, "-m", "linear_impls", "_check-worker", "--impl", plan.impl.name,
               "--start", todo[0], "--progress", str(progress_file)]
        for d in plan.devices:
            cmd += ["--device", d]
        for d in plan.dtypes:
            cmd += ["--dtype", d]
        for shape in plan.shapes:
            cmd += ["--shape", shape]
        return cmd

    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="linbench-check-") as workdir:
        supervise.run_cases(keys, command, Path(workdir), env=env, case_timeout=timeout, max_restarts=None,
                            label=f"{plan.impl.name} check", log=lambda _line: None,
                            startup_timeout=STARTUP_SECONDS, max_in_a_row=MAX_CRASHES,
                            memory_limit=memory_limit, on_result=heard)
    return [results[i] for i in sorted(results)]


MAX_CRASHES = 3
# Importing torch in a fresh worker: not counted against the per-case limit.
STARTUP_SECONDS = 120.0


def worker_main(impl: Impl, devices: list[str], dtypes: tuple[str, ...], start: int, progress_file: str,
                shapes: tuple[str, ...] = ()) -> int:
    """The child: run cases from ``start`` on, writing the supervisor's protocol as it goes."""
    plan = CheckPlan(impl, devices, dtypes, shapes)
    with open(progress_file, "a", buffering=1) as out:
        for index in range(start, len(plan.cases)):
            case, dtype, device, check = plan.cases[index]
            out.write(json.dumps({"start": str(index)}) + "\n")
            res = checks.run_check(impl, case, dtype, device, check)
            out.write(json.dumps({"done": str(index), "result": res.to_dict()}) + "\n")
    return 0
