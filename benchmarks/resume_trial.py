"""Does a run killed halfway, then resumed, record what one whole run records, and redo nothing?

What a CI job that is killed (a time limit, a lost runner) and then re-run with
``--resume`` does, on a scratch clone of HEAD:

1. a whole ``linbench run`` of the sweep, recorded under one machine name;
2. the same run under a second machine name, killed (SIGKILL to its whole process
   group, as a CI runner kills a job) a few seconds into chunk ``--kill-in``;
3. ``linbench run --resume`` under the second name.

Then compares the two machines' results: every case the whole run recorded (a value
or a failure) must be recorded after the resume, with the same outcome, and the resume
must run only the chunks and cases the kill left unrecorded.  Prints each step, the
cases each run recorded, and a verdict line; exit 0 when both hold.

    .venv/bin/python benchmarks/resume_trial.py                 # quick sweep, float32, ~8 minutes here
    .venv/bin/python benchmarks/resume_trial.py --keep /tmp/resume   # keep the scratch clone and its results
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asv_tools import ASV, ROOT, scratch_clone  # noqa: E402

WHOLE, KILLED = "resume-trial-whole", "resume-trial-killed"
CHUNK_DONE = re.compile(r"^linbench: \[(\d+)/(\d+)\] .* took \d+ s$")
CHUNK_START = re.compile(r"^linbench: \[(\d+)/(\d+)\] ")


def linbench(repo: Path, sweep_name: str, dtype: str, machine: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "linear_impls", "run", "--root", str(repo), "--sweep", sweep_name,
            "--dtype", dtype, *extra, "--", "--machine", machine]


def run_whole(cmd: list[str], log: Path) -> tuple[int, float, list[str]]:
    t0 = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    return code, time.perf_counter() - t0, log.read_text(errors="replace").splitlines()


def run_and_kill(cmd: list[str], log: Path, kill_in: int, after_s: float) -> tuple[int | None, list[str]]:
    """Run ``cmd``; kill its process group ``after_s`` seconds into chunk ``kill_in``.  Returns
    the chunks it finished before the kill (None when it ended first) and its output."""
    lines: list[str] = []
    finished = 0
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        for line in proc.stdout:
            out.write(line)
            out.flush()
            lines.append(line.rstrip("\n"))
            if CHUNK_DONE.match(lines[-1]):
                finished += 1
            m = CHUNK_START.match(lines[-1])
            if m and int(m.group(1)) == kill_in and not CHUNK_DONE.match(lines[-1]):
                time.sleep(after_s)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                out.write(f"resume_trial: killed {after_s:g} s into chunk {kill_in}\n")
                return finished, lines
        proc.wait()
    return None, lines


def outcomes(results_dir: Path, machine: str) -> dict[str, tuple[str, float | None]]:
    """Every case the machine's results record: ``measured`` or ``failed`` (n/a cases left
    out), with when its benchmark started (a case run again starts later)."""
    from linear_impls import results

    got: dict[str, tuple[str, float | None]] = {}
    for res in results.iter_files(results_dir, machine=machine):
        for case in results.iter_cases(res):
            if case.value is None:
                got[case.key] = ("failed", case.started_at)
            elif not math.isnan(case.value):
                got[case.key] = ("measured", case.started_at)
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", default="quick", help="the sweep to run (default quick)")
    ap.add_argument("--dtype", default="float32", help="its dtype to run (default float32)")
    ap.add_argument("--kill-in", type=int, default=3, help="the chunk the kill lands in (default 3)")
    ap.add_argument("--after", type=float, default=5.0, help="seconds into that chunk (default 5)")
    ap.add_argument("--keep", metavar="DIR", help="build the scratch clone here and keep it")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # here, not at the top: asv imports benchmarks/ in its environments
    if args.kill_in < 2:
        print("resume_trial: --kill-in must be 2 or more (a chunk must be saved before the kill)", file=sys.stderr)
        return 2
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="linbench-resume-"))
    repo = scratch_clone(work / "repo")
    results_dir = repo / ".asv" / "results"
    for machine in (WHOLE, KILLED):  # asv records under a machine it has been told of
        subprocess.run([ASV, "machine", "--yes", "--machine", machine], cwd=repo, check=True,
                       stdout=subprocess.DEVNULL)

    print(f"resume_trial: 1. the whole run ({args.sweep} sweep, {args.dtype}) under {WHOLE}", flush=True)
    code, took, _ = run_whole(linbench(repo, args.sweep, args.dtype, WHOLE), work / "whole.log")
    whole = outcomes(results_dir, WHOLE)
    print(f"resume_trial:    exit {code}, {took:.0f} s, {len(whole)} cases recorded "
          f"({sum(v[0] == 'failed' for v in whole.values())} failed)", flush=True)
    if not whole:
        print(f"resume_trial: the whole run recorded nothing (its output: {work / 'whole.log'})", file=sys.stderr)
        return 1

    print(f"resume_trial: 2. the same run under {KILLED}, killed {args.after:g} s into chunk {args.kill_in}",
          flush=True)
    finished, _ = run_and_kill(linbench(repo, args.sweep, args.dtype, KILLED), work / "killed.log",
                               args.kill_in, args.after)
    if finished is None:
        print(f"resume_trial: the run ended before chunk {args.kill_in}: ask for an earlier one", file=sys.stderr)
        return 2
    before_resume = outcomes(results_dir, KILLED)
    print(f"resume_trial:    {finished} chunks finished before the kill, {len(before_resume)} cases recorded",
          flush=True)

    print("resume_trial: 3. linbench run --resume under the same name", flush=True)
    code, took, lines = run_whole(linbench(repo, args.sweep, args.dtype, KILLED, "--resume"), work / "resume.log")
    after = outcomes(results_dir, KILLED)
    plan = next((ln for ln in lines if " asv runs" in ln), "")
    print(f"resume_trial:    exit {code}, {took:.0f} s; {plan.removeprefix('linbench: ')}", flush=True)

    lost = sorted(set(whole) - set(after))
    differ = sorted(k for k in set(whole) & set(after) if whole[k][0] != after[k][0])
    extra = sorted(set(after) - set(whole))
    # A case recorded before the kill and measured again by the resume starts later.  The
    # environment's bookkeeping rides along in every asv run, by design.
    from linear_impls.asvrun import BOOKKEEPING

    redone = sorted(k for k in before_resume if after.get(k, before_resume[k])[1] != before_resume[k][1]
                    and not k.startswith(BOOKKEEPING))
    m = re.search(r"in (\d+) asv runs", plan)
    chunks_resumed = int(m.group(1)) if m else None
    m_total = next((CHUNK_START.match(ln) for ln in (work / "whole.log").read_text().splitlines()
                    if CHUNK_START.match(ln)), None)
    chunks_whole = int(m_total.group(2)) if m_total else None
    print(f"resume_trial: whole run {len(whole)} cases in {chunks_whole} chunks; killed run {len(before_resume)} "
          f"before the resume, {len(after)} after it, the resume in {chunks_resumed} chunks")
    for name, keys in (("recorded by the whole run, missing after the resume", lost),
                       ("a different outcome (measured/failed) in the two", differ),
                       ("recorded after the resume only", extra),
                       ("recorded before the kill and run again by the resume", redone)):
        if keys:
            print(f"resume_trial: {len(keys)} {name}: " + ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else ""))
    ok = (not lost and not differ and chunks_resumed is not None and chunks_whole is not None
          and chunks_resumed < chunks_whole and not redone)
    print(f"resume_trial: {'PASS' if ok else 'FAIL'}: the resumed run records "
          f"{'every' if not lost else 'not every'} case of the whole run"
          f"{', with the same outcomes' if not differ else ', with other outcomes'}; it ran "
          f"{chunks_resumed} of {chunks_whole} chunks and {len(redone)} of the {len(before_resume)} cases "
          "recorded before the kill", flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
