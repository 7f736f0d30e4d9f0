"""Helpers for the scripts under benchmarks/: run asv on HEAD and read what it recorded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASV = str(Path(sys.executable).parent / "asv")


def run_asv(patterns: list[str], *, sweep: str = "default", extra: list[str] | None = None) -> float:
    """``asv run HEAD^!`` restricted to ``patterns``; returns its wall time in seconds."""
    import time

    cmd = [ASV, "run", "--record-samples", "HEAD^!", *(extra or [])]
    for p in patterns:
        cmd += ["-b", p]
    env = dict(os.environ, LINBENCH_SWEEP=sweep)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def scratch_clone(repo: Path, branch: str | None = None) -> Path:
    """A fresh clone of this checkout at ``repo`` (asv benchmarks what is committed), reusing the
    checkout's asv environments when it has them (torch is a minute to install)."""
    shutil.rmtree(repo, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", *(["--branch", branch] if branch else []), str(ROOT), str(repo)],
                   check=True)
    (repo / ".asv").mkdir(exist_ok=True)
    if (ROOT / ".asv" / "env").is_dir():
        (repo / ".asv" / "env").symlink_to(ROOT / ".asv" / "env")
    return repo


def results_file(commit: str) -> Path:
    """The newest results file of ``commit`` under .asv/results (the one environment of asv.conf.json)."""
    files = [p for p in (ROOT / ".asv" / "results").glob(f"*/{commit[:8]}-*.json")]
    if not files:
        raise SystemExit(f"no asv results for {commit[:8]} under .asv/results")
    return max(files, key=lambda p: p.stat().st_mtime)


def head_results():
    """The results file of HEAD, read as asv reads it (``linear_impls.results``)."""
    from linear_impls import results

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    return results.read(results_file(commit))


def cases(res, benchmark: str) -> dict[tuple, dict]:
    """{params tuple: {"median": s, "samples": [...]}} for one benchmark, skipping n/a and failures."""
    import ast

    from linear_impls import results

    return {tuple(ast.literal_eval(v) for v in c.params): {"median": c.value, "samples": c.samples or []}
            for c in results.iter_cases(res)
            if c.benchmark == benchmark and c.value is not None and c.value == c.value}

