"""``linbench run``: the sweep through real ``asv run``, in chunks that survive interruption.

asv writes a commit's results file when a whole pass over the selected
benchmarks ends, so a run killed halfway would lose everything.  We run the sweep
as one asv invocation per dtype (each saved as soon as it ends) and, on
``--resume``, select only the cases that HEAD's results do not hold yet.  The
plain-asv equivalent is ``asv run --skip-existing`` (whole benchmarks only).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from . import bench, instructions, sweep


def machine_name(asv_args: list[str]) -> str:
    """The asv machine a run records under, resolved as ``asv run`` resolves it.

    ``--machine NAME`` (or ``--machine=NAME``) among the arguments; else the host name,
    or the one machine of asv's machine file when it holds exactly one.
    """
    for i, arg in enumerate(asv_args):
        if arg == "--machine" and i + 1 < len(asv_args):
            return asv_args[i + 1]
        if arg.startswith("--machine="):
            return arg.split("=", 1)[1]
    import platform

    host = platform.uname().node
    try:
        machines = json.loads((Path.home() / ".asv-machine.json").read_text())
    except (OSError, ValueError):
        return host
    entries = {k: v for k, v in machines.items() if k != "version"} if isinstance(machines, dict) else {}
    if host in entries:
        return host
    if len(entries) == 1:
        only = next(iter(entries.values()))
        return str(only.get("machine", host)) if isinstance(only, dict) else host
    return host


def resolve_commit(root: Path, rev: str = "HEAD") -> str:
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise ValueError(f"{rev!r} is not a commit of the git checkout {root}")
    return out.stdout.strip()


def results_files(results_dir: Path, commit_prefix: str = ""):
    """Every asv results file (as a dict) under ``results_dir``, optionally of one commit."""
    for path in results_dir.glob(f"*/{commit_prefix[:8]}*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        # machine.json and benchmarks.json live there too
        if isinstance(data, dict) and "result_columns" in data and isinstance(data.get("commit_hash"), str):
            yield data


def existing_cases(results_dir: Path, commit: str) -> set[str]:
    """``name(param, ...)`` strings that HEAD's results already hold (a value or a failure)."""
    done: set[str] = set()
    for data in results_files(results_dir, commit):
        for name, combo, value, _samples in iter_results(data):
            if value is None or value == value:  # failed or measured; NaN means not run
                done.add(f"{name}({', '.join(combo)})")
    return done


def iter_results(data: dict):
    """(benchmark, params as asv's repr strings, value, samples) for every case of a results file."""
    cols = data["result_columns"]
    for name, entry in data.get("results", {}).items():
        row = dict(zip(cols, entry, strict=False))
        samples = row.get("samples") or [None] * len(row["result"])
        yield from ((name, combo, value, smp) for combo, value, smp in
                    zip(itertools.product(*row["params"]), row["result"], samples, strict=False))


def _chunk_patterns(sweep_def: sweep.Sweep, dtype: str, skip: set[str]) -> list[str]:
    one = dataclasses.replace(sweep_def, dtypes=(dtype,))
    patterns = bench.asv_regex(one)
    if not skip:
        return patterns
    # Exclude what is already recorded: a negative lookahead over the exact names.
    done = "|".join(re.escape(s) for s in sorted(skip))
    return [f"^(?!(?:{done})$)" + p.lstrip("^") for p in patterns]


def recorded_commits(results_dir: Path) -> set[str]:
    """Full hashes of every commit the results folder holds results for (any machine)."""
    return {data["commit_hash"] for data in results_files(results_dir)}


def new_commits(root: Path, results_dir: Path, limit: int) -> list[str]:
    """HEAD's ancestors that no results file holds, oldest first, at most ``limit`` (the newest).

    asv's own ``NEW`` would run every commit of the branch when the folder is empty
    (a fresh CI cache); here an empty folder means HEAD alone.
    """
    head = resolve_commit(root)
    known = [c for c in recorded_commits(results_dir)
             if subprocess.run(["git", "cat-file", "-e", f"{c}^{{commit}}"], cwd=root,
                               capture_output=True).returncode == 0]
    if not known:
        return [head]
    out = subprocess.run(["git", "rev-list", "--reverse", "HEAD", "--not", *known], cwd=root,
                         capture_output=True, text=True, check=True).stdout.split()
    return out[-limit:]


def run_sweep(sweep_name: str, asv_args: list[str], *, root: Path, resume: bool = False,
              dtypes: list[str] | None = None, commit: str = "HEAD", commits: list[str] | None = None) -> int:
    """Run the sweep (or some of its dtypes) on one commit, or on ``commits`` (full hashes) in one
    asv run with their rounds interleaved; returns asv's worst exit status."""
    sweep_def = sweep.SWEEPS[sweep_name]
    chosen = [d for d in sweep_def.dtypes if not dtypes or d in dtypes]
    asv = str(Path(sys.executable).parent / "asv")
    commits = commits or [resolve_commit(root, commit)]
    if len(commits) == 1:
        spec = f"{commits[0]}^!"
    else:
        hashfile = root / ".asv" / "run-commits.txt"
        hashfile.parent.mkdir(parents=True, exist_ok=True)
        hashfile.write_text("".join(f"{c}\n" for c in commits))
        spec = f"HASHFILE:{hashfile}"
    skip = existing_cases(root / ".asv" / "results", commits[0]) if resume and len(commits) == 1 else set()
    env = dict(os.environ, LINBENCH_SWEEP=sweep_name)
    # Per-function instruction counts beside this machine's results (plain asv run, which
    # cannot say its machine to a benchmark, keeps them in one folder for all machines).
    env.setdefault(instructions.SIDECAR_ENV,
                   str(instructions.sidecar_dir(root / ".asv" / "results" / machine_name(asv_args))))
    worst = 0
    t0 = time.perf_counter()
    for i, dtype in enumerate(chosen, 1):
        print(f"linbench: [{i}/{len(chosen)}] {sweep_name} sweep, {dtype}"
              + (f" (resuming: {len(skip)} cases already recorded)" if skip else ""), flush=True)
        # Interleaved rounds: round 2 of every case runs after round 1 of all of them,
        # so a burst from a neighbour on this shared machine hits one round of a case,
        # not both.
        cmd = [asv, "run", spec, "--interleave-rounds", *asv_args]
        for p in _chunk_patterns(sweep_def, dtype, skip):
            cmd += ["-b", p]
        t_chunk = time.perf_counter()
        code = subprocess.run(cmd, cwd=root, env=env).returncode
        if code < 0 or code in (130, 143):
            return code
        worst = max(worst, code)
        print(f"linbench: [{i}/{len(chosen)}] {dtype} took {time.perf_counter() - t_chunk:.0f} s", flush=True)
    print(f"linbench: {sweep_name} sweep took {time.perf_counter() - t0:.0f} s of asv", flush=True)
    return worst
