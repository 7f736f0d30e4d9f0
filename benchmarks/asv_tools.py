"""Helpers for the scripts under benchmarks/: run asv on HEAD and read what it recorded."""

from __future__ import annotations

import json
import os
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


def head_results() -> dict:
    """The results file of HEAD (the one environment of asv.conf.json)."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    files = [p for p in (ROOT / ".asv" / "results").glob(f"*/{commit[:8]}-*.json")]
    if not files:
        raise SystemExit(f"no asv results for HEAD {commit[:8]} under .asv/results")
    return json.loads(max(files, key=lambda p: p.stat().st_mtime).read_text())


def cases(results: dict, benchmark: str) -> dict[tuple, dict]:
    """{params tuple: {"median": s, "samples": [...]}} for one benchmark, skipping n/a and failures."""
    from linear_impls.asvrun import iter_results

    out = {}
    for name, combo, value, smp in iter_results(results):
        if name != benchmark or value is None or value != value:
            continue
        out[tuple(json.loads(v.replace("'", '"')) for v in combo)] = {"median": value, "samples": smp or []}
    return out
