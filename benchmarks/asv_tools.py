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


RESULT_COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a", "stats_ci_99_b",
                  "stats_q_25", "stats_q_75", "stats_number", "stats_repeat", "samples", "profile"]


def write_results_file(folder: Path, machine: dict, commit: str, date_ms: int, env: str,
                       benchmarks: dict[str, tuple[list[list], list]]) -> Path:
    """Write one results file as asv 0.6 writes it, for hand-made and synthetic histories.

    ``benchmarks``: {name: (param axes of plain values, rows)}, each row either a
    value (a float, None for failed, NaN for skipped) or a dict with ``result``
    and any of ``ci_99_a``, ``ci_99_b``, ``q_25``, ``q_75``, ``number``, ``repeat``.
    """
    mdir = Path(folder) / machine["machine"]
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / "machine.json").write_text(json.dumps({**machine, "version": 1}, indent=1) + "\n")
    results = {}
    for name, (axes, rows) in benchmarks.items():
        rows = [r if isinstance(r, dict) else {"result": r} for r in rows]

        def column(stat: str, rows=rows) -> list | None:
            values = [r.get(stat) for r in rows]
            return values if any(v is not None for v in values) else None

        results[name] = [[r["result"] for r in rows], [[repr(v) for v in axis] for axis in axes], "1", date_ms,
                         1.0, column("ci_99_a"), column("ci_99_b"), column("q_25"), column("q_75"),
                         column("number"), column("repeat"), None, None]
    data = {"commit_hash": commit, "env_name": env, "date": date_ms,
            "params": {k: v for k, v in machine.items() if k != "version"} | {"python": "3.11", "torch": "2.13.0"},
            "python": "3.11", "requirements": {"torch": "2.13.0"}, "env_vars": {},
            "result_columns": RESULT_COLUMNS, "results": results, "durations": {}, "version": 2}
    path = mdir / f"{commit[:8]}-{env}.json"
    # NaN (a skipped case) is written as asv writes it: JSON's NaN extension.
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path
