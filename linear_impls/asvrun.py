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
import time
from pathlib import Path

from . import asvconf, dispatch, envvars, functioncounts, instructions, plugins, results, sweep


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


def environment_names(root: Path, asv_args: list[str]) -> list[str]:
    """The environments ``asv run`` with these arguments benchmarks, named as asv names them.

    Each is a results file's ``env_name`` (one per entry of asv.conf.json's matrix, or
    ``existing-...`` for ``--python=same``).  asv's own argument parser and config
    loader resolve them, so ``-E``, ``--environment`` and ``--python`` mean what they mean
    to asv.  Raises ValueError with asv's reason when they name nothing asv can run.
    """
    import argparse

    from asv import environment
    from asv.commands import common_args
    from asv.config import Config

    parser = argparse.ArgumentParser(add_help=False)
    common_args.add_environment(parser)
    known, _rest = parser.parse_known_args(asv_args)
    try:
        conf = Config.load(str(root / "asv.conf.json"))
        names = [env.name for env in environment.get_environments(conf, known.env_spec or None)]
    except Exception as exc:  # asv's own errors (a bad -E spec, a broken config) have many types
        raise ValueError(f"asv cannot resolve the environments of {' '.join(asv_args) or 'this run'}: "
                         f"{exc}") from None
    if not names:
        raise ValueError(f"asv finds no environment to run for {' '.join(asv_args) or 'asv.conf.json'} "
                         "(an unknown -E/--python environment type?)")
    return names


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a run records: one asv machine and the environments it benchmarks.

    asv keeps each machine's results in a folder of its own and each environment's in
    a file of its own; every question of "what is recorded already?" is asked of
    these files only, so a run on one machine never skips what another measured.
    """

    machine: str
    envs: tuple[str, ...]

    @classmethod
    def of(cls, root: Path, asv_args: list[str]) -> Target:
        return cls(machine_name(asv_args), tuple(environment_names(root, asv_args)))

    def describe(self) -> str:
        return f"machine {self.machine!r}, {'environment' if len(self.envs) == 1 else 'environments'} " \
               f"{', '.join(self.envs)}"


def resolve_commit(root: Path, rev: str = "HEAD") -> str:
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise ValueError(f"{rev!r} is not a commit of the git checkout {root}")
    return out.stdout.strip()


def results_files(results_dir: Path, commit_prefix: str = "", target: Target | None = None):
    """Every readable asv results file under ``results_dir``: of one commit, of one target."""
    if target is None:
        return results.iter_files(results_dir, commit_prefix)
    return results.iter_files(results_dir, commit_prefix, target.machine, target.envs)


def recorded_cases(res) -> dict[str, object]:
    """``{name(param, ...): value}`` for every case a results file holds (a value, or None: failed)."""
    return {case.key: case.value for case in results.iter_cases(res) if case.recorded}


def existing_cases(results_dir: Path, commit: str, target: Target) -> set[str]:
    """``name(param, ...)`` strings that ``commit``'s results hold (a value or a failure) in every
    environment of ``target``: what a resumed run may skip.

    One ``asv run`` benchmarks all the environments with the same selection, so a case
    is skipped only when none of them lacks it.
    """
    per_env: dict[str, set[str]] = {env: set() for env in target.envs}
    for res in results_files(results_dir, commit, target):
        per_env[res.env_name] |= set(recorded_cases(res))
    return set.intersection(*per_env.values()) if per_env else set()


# One asv invocation per chunk: a chunk's results are written when it ends, so a kill
# loses the chunk in flight and no more.  Each chunk pays asv's start-up again; the
# groups below are the trade-off measured in benchmarks/README.md ("Chunks").
# First what the page answers with (the speedups, then the wall times and ceilings of its
# tables and roofline), so `make bench`'s page after each chunk has the answer early; then
# what the history decides with.  Each group's role: "answer" (the first screen, its
# tables, roofline, dispatch and compile sections) or "history" (what decides between
# commits, and the peak memory).
CHUNK_GROUPS = (
    # The first screen's speedups, from the speedup worker's processes (Speedup.setup_cache).
    ("speedup over the baseline", ("Speedup",), "answer"),
    ("wall time, ceilings and dispatch", ("Timed", "Ceilings", "Dispatch"), "answer"),
    ("ratio to F.linear", ("RelativeToTorch",), "history"),
    # Peak memory: a process per case for what the op traces' intermediate bytes tell in
    # short; with the history's metrics, to keep make bench's answer within its budget.
    ("peak memory", ("HostMemory", "DeviceMemory"), "history"),
    ("instruction counts", ("Instructions",), "history"),
    # Compiling takes seconds per case: a chunk of its own, lost alone if killed.
    ("compiled variants", ("Compiled",), "answer"),
    ("compiled variants' ratio to F.linear", ("CompiledRatio",), "history"),
)
ROLES = ("answer", "history")


@dataclasses.dataclass(frozen=True)
class Chunk:
    dtype: str
    label: str
    patterns: tuple[str, ...]


def chunks(sweep_def: sweep.Sweep, dtypes: list[str], skip: set[str], impls: list[str] | None = None,
           devices: list[str] | None = None, roles: tuple[str, ...] = ROLES) -> list[Chunk]:
    """The asv invocations of a sweep, in order: per dtype, one per group of benchmarks of
    ``roles`` that has cases on ``devices`` (default: every device here)."""
    out = []
    for dtype in dtypes:
        patterns = asvconf.case_patterns(dataclasses.replace(sweep_def, dtypes=(dtype,)), devices=devices, impls=impls)
        for label, families, role in CHUNK_GROUPS:
            if role not in roles:
                continue
            mine = [patterns[f] for f in families if f in patterns]
            if mine:
                # The environment's bookkeeping benchmark rides along, as in any asv run.
                out.append(Chunk(dtype, label, tuple(_excluding([patterns["Environment"], *mine], skip))))
    return out


def pending(todo: list[Chunk], whole: list[Chunk], benchmarks_json: Path, skip: set[str]) -> list[Chunk]:
    """The chunks of a resumed run that select a case ``skip`` lacks.

    ``whole``: the same chunks with nothing excluded, whose patterns are matched against every
    case asv's discovery found (its ``benchmarks.json``).  A chunk whose cases are all recorded,
    the bookkeeping that rides along aside, is left out: its asv start-up would measure nothing.
    Without a readable ``benchmarks.json`` every chunk is kept.
    """
    try:
        found = json.loads(benchmarks_json.read_text())
    except (OSError, ValueError):
        return todo
    names = [f"{name}({', '.join(combo)})" for name, bench in found.items()
             if isinstance(bench, dict) and bench.get("params") and not name.startswith(BOOKKEEPING)
             for combo in itertools.product(*bench["params"])]
    left = [n for n in names if n not in skip]
    keep = []
    for chunk, full in zip(todo, whole, strict=True):
        patterns = [re.compile(p) for p in full.patterns]
        if any(p.search(n) for n in left for p in patterns):
            keep.append(chunk)
    return keep


def case_select(chunk: Chunk) -> str:
    """``$LINBENCH_SELECT`` for a chunk: the workers of ``setup_cache`` (the speedups, the op
    traces), which cannot see ``-b``, then measure only the chunk's cases."""
    return "|".join(f"(?:{p})" for p in chunk.patterns)


def _excluding(patterns: list[str], skip: set[str]) -> list[str]:
    if not skip:
        return patterns
    # Exclude what is already recorded: a negative lookahead over the exact names.
    done = "|".join(re.escape(s) for s in sorted(skip))
    return [f"^(?!(?:{done})$)" + p.lstrip("^") for p in patterns]


def recorded_commits(results_dir: Path, target: Target) -> set[str]:
    """Full hashes of the commits that every environment of ``target`` has a results file for."""
    envs_of: dict[str, set[str]] = {}
    for res in results_files(results_dir, target=target):
        envs_of.setdefault(res.commit_hash, set()).add(res.env_name)
    return {c for c, envs in envs_of.items() if envs >= set(target.envs)}


def new_commits(root: Path, results_dir: Path, limit: int, target: Target) -> list[str]:
    """HEAD's ancestors that ``target`` has no results for, oldest first, at most ``limit`` (the newest).

    asv's own ``NEW`` would run every commit of the branch when the folder is empty
    (a fresh CI cache); here an empty folder means HEAD alone.
    """
    head = resolve_commit(root)
    known = [c for c in recorded_commits(results_dir, target)
             if subprocess.run(["git", "cat-file", "-e", f"{c}^{{commit}}"], cwd=root,
                               capture_output=True).returncode == 0]
    if not known:
        return [head]
    out = subprocess.run(["git", "rev-list", "--reverse", "HEAD", "--not", *known], cwd=root,
                         capture_output=True, text=True, check=True).stdout.split()
    return out[-limit:]


def snapshot(results_dir: Path, commits: list[str], target: Target) -> dict[tuple, object]:
    """Every recorded case of ``commits`` under ``target``, with when its benchmark last ran:
    ``{(commit, env, case): (value, samples, started_at)}``.

    A case re-measured with the same value (a failure again, an equal count) still
    shows as recorded anew: its benchmark's start time moved.
    """
    out: dict[tuple, object] = {}
    for commit in commits:
        for res in results_files(results_dir, commit, target):
            for case in results.iter_cases(res):
                if case.benchmark.startswith(BOOKKEEPING) or not case.recorded:
                    continue
                out[(res.commit_hash, res.env_name, case.key)] = (case.value, case.samples, case.started_at)
    return out


# Recorded by every run whatever it was asked to measure, so it says nothing about whether
# the run measured anything.
BOOKKEEPING = "bench_linear.Environment"  # Environment, EnvironmentPrecision, EnvironmentGpu


def newly_recorded(before: dict[tuple, object], after: dict[tuple, object]) -> int:
    """How many cases ``after`` holds that ``before`` lacked or held with another value."""
    return sum(1 for key, got in after.items() if before.get(key, _MISSING) != got)


_MISSING = object()


def uncounted_select(skip: set[str]) -> str | None:
    """A ``$LINBENCH_INSTRUCTIONS_SELECT`` regex leaving out the counts ``skip`` holds (None: none).

    asv runs the counting's ``setup_cache`` whenever any of its cases is selected (an n/a
    one too), and it would count the whole sweep again under valgrind; a resumed run
    counts only what is not recorded.
    """
    counted = sorted(name for name in skip if name.startswith(instructions.BENCHMARK + "("))
    return "^(?!(?:" + "|".join(re.escape(n) for n in counted) + ")$)" if counted else None


def without_bench(asv_args: list[str]) -> list[str]:
    """``asv_args`` less any ``-b``/``--bench`` selection (asv's discovery takes none)."""
    out, skip_next = [], False
    for arg in asv_args:
        if skip_next:
            skip_next = False
        elif arg in ("-b", "--bench"):
            skip_next = True
        elif not (arg.startswith("--bench=") or (arg.startswith("-b") and len(arg) > 2)):
            out.append(arg)
    return out


NOTHING_NEW = 3  # linbench run's exit status when it recorded nothing (see commands.cmd_run)


SWEEP_FILES = "linbench-sweeps"


def keep_sweep_file(results_dir: Path, sweep_def: sweep.Sweep) -> Path | None:
    """A sweep file's copy beside the results, as TOML (``<results>/linbench-sweeps/NAME.toml``):
    the report finds there which model each case belongs to and how often a step calls it.
    asv reads only ``.json`` files there, so it never mistakes the copy for results."""
    if not sweep_def.path:
        return None
    from . import sweepfile

    dest = results_dir / SWEEP_FILES / f"{sweep_def.name}.toml"
    dest.parent.mkdir(parents=True, exist_ok=True)
    sf = sweepfile.load(sweep_def.path)
    dest.write_text(sweepfile.dumps(sf, header=f"kept by linbench run from {sf.path}"))
    return dest


RUNS = "sweeps"  # under a machine's results folder: which sweeps each commit and environment ran


def record_sweep(results_dir: Path, target: Target, commits: list[str], sweep_def: sweep.Sweep,
                 dtypes: list[str]) -> None:
    """Say beside the results which sweep (and which of its dtypes) each commit and environment
    ran, so the report judges what is missing against the cases the run was meant to hold.
    Written before asv runs: a run killed halfway was still meant to hold them all."""
    from . import sidecar

    for commit in commits:
        for env_name in target.envs:
            path = sidecar.path_for(results_dir / target.machine / RUNS, commit, env_name)
            data = sidecar.read(path) or {"format": 1, "commit": commit, "env_name": env_name, "cases": {}}
            # "cases" (the sidecar files' one mapping): the sweeps by name.
            mine = data["cases"].setdefault(sweep_def.name, {"file": bool(sweep_def.path), "dtypes": []})
            mine["dtypes"] = [d for d in sweep.DTYPES if d in set(mine["dtypes"]) | set(dtypes)]
            sidecar.write(path, data)


def recorded_sweeps(results_dir: Path, machine: str, commit: str, env_name: str) -> dict[str, dict]:
    """``{sweep name: {"file": is a sweep file, "dtypes": [...]}}`` that linbench run recorded for
    a results file; {} for one plain asv wrote."""
    from . import sidecar

    data = sidecar.read(sidecar.path_for(Path(results_dir) / machine / RUNS, commit, env_name))
    return data["cases"] if data else {}


def run_sweep(sweep_ref: str, asv_args: list[str], *, root: Path, target: Target, resume: bool = False,
              dtypes: list[str] | None = None, commit: str = "HEAD", commits: list[str] | None = None,
              impls: list[str] | None = None, devices: list[str] | None = None,
              after_chunk: str | None = None, roles: tuple[str, ...] = ROLES) -> int:
    """Run the sweep (or some of its dtypes) on one commit, or on ``commits`` (full hashes) in one
    asv run with their rounds interleaved; returns asv's worst exit status, or NOTHING_NEW
    (having said why) when the results of ``target`` hold nothing they did not hold before.

    ``devices``: only the cases on these (a GPU runner: ``["cuda"]``, no valgrind, no CPU
    timings).  ``after_chunk``: a shell command run after each asv invocation (CI pushes the
    results so far with it, so a job killed later loses one chunk at most).  ``roles``: only the
    chunks of these roles (``CHUNK_GROUPS``)."""
    sweep_def = sweep.load(sweep_ref)
    sweep_name = sweep_def.name
    chosen = [d for d in sweep_def.dtypes if not dtypes or d in dtypes]
    asv = asvconf.executable()
    results_dir = root / ".asv" / "results"
    commits = commits or [resolve_commit(root, commit)]
    if len(commits) == 1:
        spec = f"{commits[0]}^!"
    else:
        hashfile = root / ".asv" / "run-commits.txt"
        hashfile.parent.mkdir(parents=True, exist_ok=True)
        hashfile.write_text("".join(f"{c}\n" for c in commits))
        spec = f"HASHFILE:{hashfile}"
    skip = existing_cases(results_dir, commits[0], target) if resume and len(commits) == 1 else set()
    before = snapshot(results_dir, commits, target)
    env = {**os.environ, envvars.SWEEP: sweep_def.ref}
    keep_sweep_file(results_dir, sweep_def)
    # Per-function instruction counts beside this machine's results (plain asv run, which
    # cannot say its machine to a benchmark, keeps them in one folder for all machines).
    env.setdefault(functioncounts.SIDECAR_ENV, str(functioncounts.sidecar_dir(results_dir / target.machine)))
    env.setdefault(dispatch.SIDECAR_ENV, str(results_dir / target.machine / dispatch.SIDECAR))
    select = uncounted_select(skip)
    if impls is not None:  # valgrind counts only the chosen implementations (setup_cache cannot see -b)
        # Both lookaheads at the start: the chosen implementations, then the uncounted ones.
        select = rf"^(?=.*\({asvconf.param_alternatives(impls)}, )" + (select or "").lstrip("^")
    if select and not env.get(instructions.SELECT_ENV):
        env[instructions.SELECT_ENV] = select
    # The plugins this process loaded, in asv's environments too; then asv's discovery there
    # (on the newest commit: an older one may predate a plugin's support), before any timing.
    env.update(plugins.environment(root))
    print("linbench: discovering the benchmarks in asv's environment", flush=True)
    plugins.discover(root, asv, ["run", f"{commits[-1]}^!", *without_bench(asv_args)], env, results_dir)
    todo = chunks(sweep_def, chosen, skip, impls, devices, roles)
    n_chunks = len(todo)
    if skip:
        todo = pending(todo, chunks(sweep_def, chosen, set(), impls, devices, roles),
                       results_dir / "benchmarks.json", skip)
    record_sweep(results_dir, target, commits, sweep_def, chosen)
    print(f"linbench: {sweep_name} sweep on {len(commits)} commit{'s' if len(commits) > 1 else ''}, "
          f"recorded under {target.describe()}, in {len(todo)} asv runs"
          + (f" (resuming: {len(skip)} cases already recorded there; {n_chunks - len(todo)} of {n_chunks} "
             "asv runs with nothing left to measure left out)" if skip else ""), flush=True)
    worst = 0
    t0 = time.perf_counter()
    for i, chunk in enumerate(todo, 1):
        print(f"linbench: [{i}/{len(todo)}] {chunk.dtype}, {chunk.label}", flush=True)
        # Interleaved rounds: round 2 of every case runs after round 1 of all of them,
        # so a burst from a neighbour on this shared machine hits one round of a case,
        # not both.
        # Samples kept: the speedups' are one median per process, the page's intervals.
        cmd = asvconf.run_command(spec, chunk.patterns, "--interleave-rounds", *asv_args)
        t_chunk = time.perf_counter()
        chunk_env = {**env, envvars.SELECT: case_select(chunk)}
        code = subprocess.run(cmd, cwd=root, env=chunk_env).returncode
        if code < 0 or code in (130, 143):
            return code
        worst = max(worst, code)
        print(f"linbench: [{i}/{len(todo)}] {chunk.dtype}, {chunk.label} took "
              f"{time.perf_counter() - t_chunk:.0f} s", flush=True)
        if after_chunk:
            done = subprocess.run(after_chunk, shell=True, cwd=root, env=env)
            if done.returncode:
                print(f"linbench: warning: the command after the chunk exited {done.returncode}: {after_chunk}",
                      flush=True)
    print(f"linbench: {sweep_name} sweep took {time.perf_counter() - t0:.0f} s of asv", flush=True)
    if not newly_recorded(before, snapshot(results_dir, commits, target)):
        which = ", ".join(c[:8] for c in commits)
        why = (f"every case of the {sweep_name} sweep was already recorded there (--resume)" if skip
               else "asv measured no case (its output above says why: a failed build, an environment "
                    "it could not create, or no benchmark matching)")
        print(f"linbench: nothing new recorded for {which} under {target.describe()}: {why}", flush=True)
        return NOTHING_NEW
    return worst
