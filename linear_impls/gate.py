"""``linbench gate BASE HEAD``: did HEAD make any case slower, or any gate fail, that BASE passed?

How the two commits are compared, and why.  This is a shared 2-core machine with
episodes in which everything runs 1.5-2x slower for 0.1-1 s; an A/A gate on absolute
asv times (4 interleaved rounds, Mann-Whitney on the samples) flagged a 1x8x8 case
2.0x "slower", and missed a planted 20% slowdown (``benchmarks/gate_trials.py``).

* **The metric** is the ratio to F.linear (``suite.BY_KIND["ratio"]``): each case's time
  over torch's own ``F.linear`` on inputs of the same shape, dtype and mode,
  measured in alternating ~2 ms blocks in one process.  An episode slows both sides
  of a block alike, so the ratio holds still (A/A: 89-94% of cases within 5%) where absolute times
  move 2x.  The reference never comes from the registry, so a change to any
  implementation shows; a change to torch itself does not (both commits share one
  environment; asv's history of absolute times covers torch upgrades).
* **Rounds interleaved BASE, HEAD, BASE, HEAD**: ``--rounds`` (default 3) asv runs
  of both commits, each a fresh process per case and commit, every block's ratio
  kept (``--record-samples --append-samples``).  Not asv's ``--interleave-rounds``,
  whose BASE HEAD HEAD BASE let one slow spell in the middle hit both of HEAD's
  rounds and none of BASE's: that made mul_sum's memory-bound forward 1.30x
  "slower" in every HEAD process of a trial.
* **A regression** is a case whose median ratio at HEAD is more than ``--factor``
  (default 1.10) times BASE's, whose block ratios differ significantly (Mann-Whitney
  U, p < 0.002, asv compare's threshold), *and* whose every HEAD process measured
  slower than every BASE process.  The last because blocks of one process share its
  state: with glibc's thresholds fixed, mul_sum's memory-bound forward still came
  out 1.15x in one of an A/A pair's processes, "significant" over its 50 blocks.
  A case measured at BASE that fails at HEAD (its gate fails in setup, it crashes)
  is a regression too.
* **Instructions per call** (``bench_linear.Instructions``, CPU cases in the sweep's
  instruction dtypes), counted under callgrind in the first round only: a count is
  the same in every run of a commit (A/A: within 1%), so it needs no statistics and
  catches a small change the ratio's noise hides.  A case whose count rose by more
  than ``--instructions-factor`` (default 1.02) is a regression, printed with the
  functions whose counts changed most.  Counts cannot see memory stalls, the
  AVX-512 paths (valgrind shows none) or the GPU: the ratio covers those.
* **Correctness.**  ``linbench check`` runs on a checkout of each commit (every
  implementation, plugins included, every dtype); a check that passes at BASE and
  fails at HEAD fails the gate and is named with its reason.

The gate keeps its asv results apart from the sweep's history (``.asv/gate``), shares
the sweep's environments, runs one thread (the quick cases are small; the other core
absorbs asv itself), and benchmarks with the working tree's ``benchmarks/`` (asv's
rule: benchmark code is not taken from the commits).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from . import asvconf, asvrun, dispatch, envvars, functioncounts, instructions, plugins, results, suite, sweep
from .verdict import classify

DEFAULT_FACTOR = 1.10
DEFAULT_INSTRUCTIONS_FACTOR = 1.02
DEFAULT_ROUNDS = 3
P_THRESHOLD = 0.002  # asv compare's threshold for its Mann-Whitney test
GATE_MACHINE = "linbench-gate"
GATE_THREADS = 1
TIMED_UNITS = ("seconds", "ratio")  # what can regress by a factor, judged with statistics
COUNTED_UNITS = ("instructions",)  # deterministic: judged by the factor alone


class GateError(Exception):
    """The gate could not run (bad commit, failed build, no results): exit 2."""


@dataclass
class Change:
    """One benchmark case's verdict."""

    benchmark: str
    params: tuple[str, ...]
    verdict: str  # slower, faster, same, changed, broke, fixed, failed at both, n/a at HEAD, new
    base: float | None = None
    head: float | None = None
    ratio: float | None = None
    p: float | None = None
    unit: str = "seconds"
    base_rounds: list[float] | None = None  # the median of each round (process), to see what decided
    head_rounds: list[float] | None = None
    # For an instruction count: the functions that changed most; for an op count, the ops.
    functions: list[str] | None = None

    @property
    def regressed(self) -> bool:
        return self.verdict in ("slower", "broke")

    @property
    def label(self) -> str:
        short = self.benchmark.removeprefix("bench_linear.")
        return f"{short}({', '.join(p.strip(chr(39)) for p in self.params)})"


@dataclass
class BrokenCheck:
    """A correctness check that passed at BASE and fails at HEAD."""

    impl: str
    check: str
    dtype: str
    device: str
    case: str
    reason: str


@dataclass
class GateResult:
    base: str
    head: str
    changes: list[Change]
    broken_checks: list[BrokenCheck]
    factor: float
    rounds: int
    seconds: float
    instructions_factor: float = DEFAULT_INSTRUCTIONS_FACTOR

    @property
    def regressed(self) -> bool:
        return bool(self.broken_checks) or any(c.regressed for c in self.changes)

    def to_dict(self) -> dict:
        return {"base": self.base, "head": self.head, "factor": self.factor, "rounds": self.rounds,
                "instructions_factor": self.instructions_factor,
                "seconds": round(self.seconds, 1), "regressed": self.regressed,
                "changes": [dict(asdict(c), label=c.label) for c in self.changes],
                "broken_checks": [asdict(b) for b in self.broken_checks]}


# --- performance ------------------------------------------------------------------------


RELATIVE = suite.BY_KIND["ratio"].asv_name
INSTRUCTIONS = suite.BY_KIND["instructions"].asv_name
DISPATCH = suite.BY_KIND["ops"].asv_name


def bench_patterns(sweep_def: sweep.Sweep, user_regex: str | None, *, counted: bool = False) -> list[str]:
    """``-b`` patterns for the sweep's cases of the gate's metric, narrowed to ``user_regex``.

    With ``counted``, the deterministic metrics' cases instead: instruction counts (CPU) and op
    traces, in the sweep's instruction dtypes.
    """
    alt, eager = asvconf.param_alternatives, asvconf.EAGER_IMPL
    if counted:
        dtypes = [d for d in sweep_def.dtypes if d in sweep_def.instruction_dtypes]
        if not dtypes:
            return []
        patterns = [rf"^{re.escape(INSTRUCTIONS)}\({eager}, {alt(sweep_def.shapes)}, {alt(dtypes)}, 'cpu', "
                    r"'[^']+'\)$",
                    # What each case dispatches to: as deterministic, so in the first round too.
                    rf"^{re.escape(DISPATCH)}\({eager}, {alt(sweep_def.shapes)}, {alt(dtypes)}, "
                    rf"{alt(sweep.available_devices())}, '[^']+'\)$"]
    else:
        patterns = [rf"^{re.escape(RELATIVE)}\({eager}, {alt(sweep_def.shapes)}, {alt(sweep_def.dtypes)}, "
                    rf"{alt(sweep.available_devices())}, '[^']+'\)$", r"^bench_linear\.Environment(?:Gpu|Precision)?\."]
    if user_regex is None:
        return patterns
    try:
        re.compile(user_regex)
    except re.error as exc:
        raise ValueError(f"--bench {user_regex!r} is not a regular expression: {exc}") from None
    # asv ORs its -b patterns; a lookahead ANDs the user's with each of ours.
    return [f"^(?=.*(?:{user_regex}))" + p.removeprefix("^") for p in patterns]


def mann_whitney_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided p of the Mann-Whitney U test (asv's implementation), None when too few samples."""
    from asv import _stats  # asv compare's own test: exact for small samples, tie-corrected

    a = [x for x in a if x == x]
    b = [x for x in b if x == x]
    if len(a) < 3 or len(b) < 3:
        return None
    return float(_stats.mann_whitney_u(a, b)[1])


def _unit(name: str) -> str:
    if name == RELATIVE:
        return "ratio"
    if name == INSTRUCTIONS:
        return "instructions"
    if name == DISPATCH:
        return "ops"
    return "seconds" if ".time_" in name else ("bytes" if ".peakmem_" in name else "")


def _state(value) -> str:
    if value is None:
        return "failed"  # asv's record of an exception: a gate failure in setup, a crash
    return "measured" if value == value else "n/a"  # NaN: skipped


# (state at BASE, state at HEAD) -> verdict, for every pair but measured/measured.
_TRANSITIONS = {
    ("measured", "failed"): "broke",
    ("n/a", "failed"): "broke",  # it runs at HEAD now, and fails
    ("measured", "n/a"): "n/a at HEAD",
    ("failed", "measured"): "fixed",
    ("failed", "failed"): "failed at both",
    ("n/a", "measured"): "new",
}


def round_medians(samples: list[float] | None, rounds: int | None) -> list[float] | None:
    """The median of each round's samples, when the samples split evenly into ``rounds``."""
    if not samples or not rounds or len(samples) % rounds:
        return None
    k = len(samples) // rounds
    return [statistics.median(samples[i * k:(i + 1) * k]) for i in range(rounds)]


def compare_results(base: Iterable[results.RecordedCase], head: Iterable[results.RecordedCase], factor: float,
                    rounds: int | None = None,
                    instructions_factor: float = DEFAULT_INSTRUCTIONS_FACTOR) -> list[Change]:
    """Verdicts for every case of two asv results files (``results.iter_cases`` of each).

    With ``rounds``, a case is only called slower (faster) when every one of HEAD's
    rounds -- each a separate process -- was slower (faster) than every one of BASE's:
    one process in an unlucky state must not decide the verdict.  An instruction
    count is deterministic: beyond ``instructions_factor`` either way is a change.
    """
    a = {(c.benchmark, c.params): (c.value, c.samples) for c in base}
    b = {(c.benchmark, c.params): (c.value, c.samples) for c in head}
    changes = []
    for key in sorted(set(a) | set(b)):
        name, combo = key
        unit = _unit(name)
        (va, sa), (vb, sb) = a.get(key, (float("nan"), None)), b.get(key, (float("nan"), None))
        states = (_state(va), _state(vb))
        if states != ("measured", "measured"):
            if states in _TRANSITIONS:
                measured = [v if state == "measured" else None for v, state in zip((va, vb), states, strict=True)]
                changes.append(Change(name, combo, _TRANSITIONS[states], *measured, unit=unit))
            continue
        ratio = vb / va if va else float("inf")
        if unit in COUNTED_UNITS:
            changes.append(Change(name, combo, classify(va, vb, instructions_factor), va, vb, ratio, None, unit))
            continue
        p = mann_whitney_p(sa, sb) if sa and sb else None
        significant = p is not None and p < P_THRESHOLD
        per_round_a, per_round_b = round_medians(sa, rounds), round_medians(sb, rounds)
        if per_round_a and per_round_b:
            every_slower = min(per_round_b) > max(per_round_a)
            every_faster = max(per_round_b) < min(per_round_a)
        else:
            every_slower = every_faster = True
        # Only timings can regress by a factor; a track (the thread count) is reported if it moved.
        if unit in TIMED_UNITS:
            verdict = classify(va, vb, factor, significant=significant and (every_slower if vb > va else every_faster))
        else:
            verdict = "changed" if va != vb else "same"
        changes.append(Change(name, combo, verdict, va, vb, ratio, p, unit, per_round_a, per_round_b))
    return changes


def asv_config(root: Path, workdir: Path) -> Path:
    """A copy of the project's asv.conf.json whose results go to ``workdir``."""
    conf = asvconf.load(root / "asv.conf.json")
    base = root.resolve()
    # One thread: the quick cases are small, and a second OpenMP thread only adds a core
    # that a neighbour on this shared machine can stall (the other core absorbs asv itself).
    conf.setdefault("matrix", {}).setdefault("env_nobuild", {})[envvars.THREADS] = [str(GATE_THREADS)]
    conf.update(
        repo=str(base),
        benchmark_dir=str(base / conf.get("benchmark_dir", "benchmarks")),
        env_dir=str(base / conf.get("env_dir", "env")),  # the sweep's environments: built once
        results_dir=str(workdir / "results"),
        html_dir=str(workdir / "html"),
    )
    path = workdir / "asv.conf.json"
    path.write_text(json.dumps(conf, indent=1))
    return path


def run_asv(root: Path, workdir: Path, base: str, head: str, patterns: list[str], rounds: int,
            sweep_name: str, log, counted_patterns: list[str] = (), user_regex: str | None = None
            ) -> tuple[list[results.RecordedCase], list[results.RecordedCase]]:
    """Benchmark both commits, BASE then HEAD, ``rounds`` times over; the cases of each.

    One asv run per round, each appending its samples (``--append-samples``), rather
    than asv's ``--interleave-rounds``: asv reverses the commit order every other
    round (BASE HEAD HEAD BASE), which puts HEAD's two rounds back to back, and a
    minute-long slow spell in the middle then hits HEAD twice and BASE never.  Here
    every HEAD round lies between two BASE rounds.  Instruction counts
    (``counted_patterns``) are taken in the first round only: they do not vary.
    """
    asv = asvconf.executable()
    config = asv_config(root, workdir)
    shutil.rmtree(workdir / "results", ignore_errors=True)
    hashes = workdir / "commits.txt"
    hashes.write_text(f"{base}\n{head}\n")
    # A machine name of the gate's own: its results never join a history, and it needs
    # no `asv machine` set up by the user.
    subprocess.run([asv, "machine", "--yes", "--machine", GATE_MACHINE], cwd=root, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    cmd = asvconf.run_command(f"HASHFILE:{hashes}", patterns, "--machine", GATE_MACHINE, "-a", "rounds=1",
                              config=config)
    # asv drops PYTHONPATH, which is right here: a checkout on it would shadow the commit's
    # installed linear_impls.  Plugins from elsewhere come in through $LINBENCH_PLUGIN_PATH (plugins.py).
    env = {**os.environ, envvars.SWEEP: sweep_name, "PYTHONUNBUFFERED": "1"}  # progress as it happens
    # 0.25 s of ratio blocks per case and round, as measured by benchmarks/gate_trials.py
    # (a history takes less: it does not test significance).
    env.setdefault(envvars.RATIO_SECONDS, "0.25")
    env[functioncounts.SIDECAR_ENV] = str(callgrind_dir(workdir))
    env[dispatch.SIDECAR_ENV] = str(workdir / dispatch.SIDECAR)
    # The op traces' setup_cache cannot see -b either: the counted patterns say what to trace.
    env[envvars.SELECT] = "|".join(f"(?:{p})" for p in counted_patterns) or "(?!)"
    if user_regex:  # valgrind counts only the cases --bench selects (setup_cache cannot see -b)
        env[instructions.SELECT_ENV] = user_regex
    try:
        env.update(plugins.environment(root, log))
    except plugins.PluginError as exc:
        raise GateError(str(exc)) from None
    code = 0
    plugin_failure = None
    with open(workdir / "asv.log", "w") as out:
        for r in range(1, rounds + 1):
            log(f"linbench gate: round {r}/{rounds}")
            extra = [a for p in counted_patterns for a in ("-b", p)] if r == 1 else ["--append-samples"]
            proc = subprocess.Popen(cmd + extra, cwd=root, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            for line in proc.stdout:
                out.write(line)
                log(line.rstrip("\n"))
                plugin_failure = plugin_failure or plugins.plugin_error_line(line)
            code = proc.wait()
            if code < 0 or code in (130, 143):
                raise KeyboardInterrupt
            if plugin_failure:
                raise GateError(f"{plugin_failure} (inside asv's environment)")
    found = {res.commit_hash: res for res in results.iter_files(workdir / "results")}
    for which, commit in (("BASE", base), ("HEAD", head)):
        if commit not in found:
            raise GateError(f"asv recorded no results for {which} {commit[:8]} (exit {code}); "
                            f"see {workdir / 'asv.log'}")
    return list(results.iter_cases(found[base])), list(results.iter_cases(found[head]))


def callgrind_dir(workdir: Path) -> Path:
    return functioncounts.sidecar_dir(workdir / "results" / GATE_MACHINE)


def attach_function_deltas(changes: list[Change], folder: Path, base: str, head: str, top: int = 5) -> None:
    """Fill each changed instruction count's ``functions`` from the per-function counts of both commits."""
    wanted = [c for c in changes if c.unit in COUNTED_UNITS and c.verdict in ("slower", "faster")]
    if not wanted:
        return
    per_base, per_head = functioncounts.load(folder, base), functioncounts.load(folder, head)
    for c in wanted:
        impl, shape, dtype, _device, mode = (p.strip("'") for p in c.params)
        key = instructions.case_key(impl, shape, dtype, mode)
        a, b = per_base.get(key), per_head.get(key)
        if a and b:
            c.functions = functioncounts.format_delta(functioncounts.delta(a["functions"], b["functions"], top))
        else:
            c.functions = ["(no per-function counts kept for this case)"]


# --- correctness ------------------------------------------------------------------------


def attach_dispatch_changes(changes: list[Change], folder: Path, base: str, head: str) -> None:
    """The ops added and removed, under each case whose op sequence changed (its number of ops
    per call, or the ops themselves at the same number), from the traces both commits kept
    (``linear_impls.dispatch``); such a case's verdict is "changed"."""
    traces = {(r["commit"][:8], r["impl"], r["shape"], r["dtype"], r["device"], r["mode"]): r["ops"]
              for r in dispatch.load_all(folder.parent) if r["machine"] == ""}
    for c in changes:
        if c.benchmark != DISPATCH or c.base is None or c.head is None:
            continue
        case = tuple(v.strip("'") for v in c.params)  # asv's reprs of plain names
        before, after = traces.get((base[:8], *case)), traces.get((head[:8], *case))
        if before is not None and after is not None and before != after:
            added, removed = dispatch.changed_ops(before, after)
            c.functions = [f"ops added: {', '.join(added) or '-'}; removed: {', '.join(removed) or '-'}"
                           if added or removed else "the same ops in another order"]
            # One op swapped for another leaves the count asv tracks the same: the trace tells.
            c.verdict = "changed"


def checkout(root: Path, commit: str, dest: Path) -> None:
    """The commit's files (not a worktree: nothing is left registered in the repository)."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=root, capture_output=True)
    if archive.returncode != 0:
        raise GateError(f"git archive {commit[:8]} failed: {archive.stderr.decode().strip()}")
    with tempfile.TemporaryFile() as f:
        f.write(archive.stdout)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            tar.extractall(dest, filter="data")


def run_checks(root: Path, commit: str, which: str, workdir: Path) -> dict[tuple, dict]:
    """``linbench check --json`` on a checkout of ``commit``, keyed by (impl, check, dtype, device, case)."""
    src = workdir / f"src-{which.lower()}"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    checkout(root, commit, src)
    env = dict(os.environ)
    # The commit's own linear_impls (and any plugin package it holds) before the installed one.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH", "")) if p)
    devices = [a for d in sweep.available_devices() for a in ("--device", d)]
    proc = subprocess.run([sys.executable, "-m", "linear_impls", "check", "--json", "--quiet", *devices],
                          cwd=src, env=env, capture_output=True, text=True)
    try:
        rows = json.loads(proc.stdout)
    except ValueError:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise GateError(f"linbench check could not run at {which} {commit[:8]}: {last}") from None
    if proc.returncode == 2:  # a plugin failed to load there: say so, keep the rows that ran
        for line in proc.stderr.strip().splitlines():
            print(f"linbench gate: at {which} {commit[:8]}: {line.removeprefix('linbench: ')}", file=sys.stderr)
    return {(r["impl"], r["check"], r["dtype"], r["device"], r["case"]): r for r in rows}


def broken_checks(base: dict[tuple, dict], head: dict[tuple, dict]) -> list[BrokenCheck]:
    out = []
    for key, row in head.items():
        if row["status"] == "fail" and base.get(key, {}).get("status") == "pass":
            out.append(BrokenCheck(*key, reason=row.get("reason") or ""))
    return out


# --- the gate ---------------------------------------------------------------------------


def run_gate(root: Path, base_rev: str, head_rev: str, *, sweep_name: str = "quick", user_regex: str | None = None,
             factor: float = DEFAULT_FACTOR, rounds: int = DEFAULT_ROUNDS, log=None,
             instructions_factor: float = DEFAULT_INSTRUCTIONS_FACTOR) -> GateResult:
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        base = asvrun.resolve_commit(root, base_rev)
        head = asvrun.resolve_commit(root, head_rev)
    except ValueError as exc:
        raise GateError(str(exc)) from None
    broken_plugins = plugins.outside_errors()
    if broken_plugins:
        raise GateError("; ".join(broken_plugins))
    try:
        sweep_def = sweep.load(sweep_name)
    except ValueError as exc:  # an unknown name, a sweep file that cannot be used
        raise GateError(str(exc)) from None
    patterns = bench_patterns(sweep_def, user_regex)
    counted = bench_patterns(sweep_def, user_regex, counted=True)
    sweep_name = sweep_def.ref
    workdir = root / ".asv" / "gate"
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # Checks first: they load both cores, so they must not overlap the timings.
    log(f"linbench gate: correctness checks at BASE {base[:8]} and HEAD {head[:8]}")
    broken = broken_checks(run_checks(root, base, "BASE", workdir), run_checks(root, head, "HEAD", workdir))
    log(f"linbench gate: timing the {sweep_def.name} cases, {rounds} interleaved rounds per commit"
        + (", instructions counted in the first" if counted else ""))
    shutil.rmtree(callgrind_dir(workdir), ignore_errors=True)
    shutil.rmtree(workdir / dispatch.SIDECAR, ignore_errors=True)
    res_base, res_head = run_asv(root, workdir, base, head, patterns, rounds, sweep_name, log, counted, user_regex)
    changes = compare_results(res_base, res_head, factor, rounds, instructions_factor)
    if not any(c.unit in TIMED_UNITS and c.verdict != "failed at both" for c in changes):
        raise GateError("no timed case matched" + (f" --bench {user_regex!r}" if user_regex else "")
                        + f" in the {sweep_def.name} sweep")
    attach_function_deltas(changes, callgrind_dir(workdir), base, head)
    attach_dispatch_changes(changes, workdir / dispatch.SIDECAR, base, head)
    return GateResult(base, head, changes, broken, factor, rounds, time.perf_counter() - t0, instructions_factor)
