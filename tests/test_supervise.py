"""The worker protocol shared by the speedups and the instruction counts: real worker
processes that finish, raise, crash and hang; the supervisor must fail the case in
flight with its reason and give every other case its result."""

from __future__ import annotations

import json
import sys

from linear_impls import supervise

# A worker taking its cases from argv: "ok" reports, "raise" reports an error, "crash"
# kills the process with SIGSEGV's exit, "hang" sleeps past the timeout.
WORKER = r'''
import json, os, signal, sys, time
progress, keys = sys.argv[1], sys.argv[2:]
time.sleep(float(os.environ.get("STARTUP_S", "0")))  # importing torch, say
with open(progress, "a", buffering=1) as out:
    for key in keys:
        out.write(json.dumps({"start": key}) + "\n")
        kind = key.split("-")[0]
        if kind == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        if kind == "hang":
            time.sleep(60)
        if kind == "raise":
            out.write(json.dumps({"error": key, "reason": "RuntimeError: no kernel"}) + "\n")
            continue
        out.write(json.dumps({"done": key, "value": len(key)}) + "\n")
'''


def run(tmp_path, keys, *, timeout=2.0, restarts=5, env=None, **kw):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    lines = []
    got = supervise.run_cases(keys, lambda todo, progress: [sys.executable, str(script), str(progress), *todo],
                              tmp_path, env=env or {}, case_timeout=timeout, max_restarts=restarts, label="test",
                              log=lines.append, **kw)
    return got, lines


def test_each_fault_fails_its_own_case_and_the_rest_are_measured(tmp_path):
    keys = ["ok-1", "crash-2", "ok-3", "raise-4", "hang-5", "ok-6"]
    got, _ = run(tmp_path, keys)
    assert set(got) == set(keys)
    assert [got[k]["value"] for k in ("ok-1", "ok-3", "ok-6")] == [4, 4, 4]
    assert got["crash-2"] == {"error": "the process died (signal SIGSEGV)"}
    assert got["raise-4"] == {"error": "RuntimeError: no kernel"}
    assert got["hang-5"]["error"].startswith("timed out: no result in 2 s")
    # One fresh worker after each of the crash and the hang, each going on from the next case.
    assert len(list(tmp_path.glob("progress*.jsonl"))) == 3
    assert json.loads((tmp_path / "progress2.jsonl").read_text().splitlines()[0]) == {"start": "ok-3"}


def test_a_worker_that_cannot_start_fails_every_case_with_its_last_words(tmp_path):
    got = supervise.run_cases(["a", "b"], lambda todo, progress: [sys.executable, "-c",
                                                                  "import sys; sys.exit('no torch here')"],
                              tmp_path, env={}, case_timeout=5, max_restarts=5, label="test",
                              log=lambda _line: None)
    assert got["a"] == got["b"]
    assert got["a"]["error"] == "the test worker failed to start (exit status 1): no torch here"


def test_restarts_are_bounded(tmp_path):
    got, _ = run(tmp_path, ["crash-1", "crash-2", "crash-3", "ok-4"], restarts=1)
    assert got["crash-1"]["error"].startswith("the process died")
    assert got["crash-2"]["error"].startswith("the process died")
    assert got["crash-3"]["error"] == "not measured: the test worker failed 2 times"
    assert got["ok-4"]["error"] == "not measured: the test worker failed 2 times"


def test_exit_reason_names_signals():
    assert supervise.exit_reason(-9) == "signal SIGKILL"
    assert supervise.exit_reason(3) == "exit status 3"
    assert supervise.exit_reason(None) == "no exit status"


def test_crashes_in_a_row_end_the_run_early_and_each_result_is_heard_as_it_comes(tmp_path):
    heard = []
    got, _ = run(tmp_path, ["ok-1", "crash-2", "crash-3", "crash-4", "ok-5"], restarts=None, max_in_a_row=3,
                 on_result=lambda key, result: heard.append(key))
    assert got["ok-1"]["value"] == 4
    # crash-2 ended a worker that had measured ok-1: the count of crashes in a row starts there.
    assert got["crash-4"]["error"].startswith("the process died (signal SIGSEGV)")
    assert got["ok-5"]["error"].startswith("not run: the implementation killed its worker 3 times in a row")
    assert heard == ["ok-1", "crash-2", "crash-3", "crash-4", "ok-5"]


def test_start_up_has_its_own_limit(tmp_path):
    slow_start = {"STARTUP_S": "1.5"}
    got, _ = run(tmp_path, ["ok-1", "ok-2"], timeout=0.5, startup_timeout=10, env=slow_start)
    assert [got[k].get("value") for k in ("ok-1", "ok-2")] == [4, 4], got
    got, _ = run(tmp_path, ["ok-1", "ok-2"], timeout=0.5, startup_timeout=1, env=slow_start)
    assert got["ok-1"] == got["ok-2"]
    assert got["ok-1"]["error"].startswith("the test worker failed to start (no word in 1 s)")


def test_a_worker_that_ends_without_taking_its_cases_is_not_restarted_forever(tmp_path):
    got = supervise.run_cases(["a"], lambda todo, progress: [sys.executable, "-c", "pass"], tmp_path, env={},
                              case_timeout=5, max_restarts=None, label="test", log=lambda _line: None)
    assert got["a"]["error"] == "the test worker failed to start (exit status 0)"
    assert len(list(tmp_path.glob("progress*.jsonl"))) == 1


def test_a_memory_limit_fails_the_allocation_not_the_machine(tmp_path):
    alloc = tmp_path / "alloc.py"
    alloc.write_text("import json, sys\n"
                     "with open(sys.argv[1], 'a') as out:\n"
                     "    out.write(json.dumps({'start': 'big'}) + '\\n')\n"
                     "    try:\n"
                     "        bytearray(1 << 30)\n"
                     "        out.write(json.dumps({'done': 'big'}) + '\\n')\n"
                     "    except MemoryError:\n"
                     "        out.write(json.dumps({'error': 'big', 'reason': 'MemoryError'}) + '\\n')\n")
    command = lambda todo, progress: [sys.executable, str(alloc), str(progress)]  # noqa: E731
    limited = supervise.run_cases(["big"], command, tmp_path, env={}, case_timeout=30, max_restarts=0,
                                  label="test", log=lambda _line: None, memory_limit=256 << 20)
    assert limited["big"] == {"error": "MemoryError"}
    free = supervise.run_cases(["big"], command, tmp_path, env={}, case_timeout=30, max_restarts=0,
                               label="test", log=lambda _line: None)
    assert free["big"] == {"done": "big"}


def test_ctrl_c_takes_the_worker_down_too(tmp_path):
    """The worker runs in a session of its own (so a hung case dies with its children), which
    keeps the terminal's SIGINT from it: the supervisor must kill it on the way out."""
    import os
    import signal
    import subprocess
    import time

    pid_file = tmp_path / "worker.pid"
    worker = tmp_path / "sleeper.py"
    worker.write_text("import json, os, sys, time\n"
                      f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                      "open(sys.argv[1], 'a').write(json.dumps({'start': 'a'}) + '\\n')\n"
                      "time.sleep(600)\n")
    supervisor = tmp_path / "supervisor.py"
    # Python's own SIGINT handler, as at a terminal (a job started in the background by a shell
    # inherits SIGINT ignored).
    supervisor.write_text("import signal, sys\nfrom pathlib import Path\nfrom linear_impls import supervise\n"
                          "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
                          f"supervise.run_cases(['a'], lambda todo, p: [sys.executable, {str(worker)!r}, str(p)], "
                          f"Path({str(tmp_path)!r}), env={{}}, case_timeout=600, max_restarts=0, label='test', "
                          "log=print)\n")
    from .conftest import ROOT

    proc = subprocess.Popen([sys.executable, str(supervisor)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and proc.poll() is None, "the worker never started"
        time.sleep(0.05)
    worker_pid = int(pid_file.read_text())
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        time.sleep(0.2)
        try:
            os.kill(worker_pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive, "the worker outlived its supervisor"
    finally:  # never leave a sleeper behind, whatever failed
        proc.kill()
        try:
            os.kill(worker_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
