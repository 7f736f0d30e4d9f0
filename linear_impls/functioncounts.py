"""Per-function instruction counts: kept beside asv's results, compared between commits.

``instructions`` counts each case under callgrind; the functions behind each count
are kept here, one sidecar file per commit and environment (``sidecar``), so that a
changed count in the history or the gate can be traced to the functions that
changed (``delta``, the idea of torch.utils.benchmark's ``CallgrindStats.delta``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from . import callgrind, envvars, sidecar

# Where the benchmark writes them when set (the gate's own folder); else asv's results folder.
SIDECAR_ENV = envvars.CALLGRIND_DIR
_FORMAT = 1

# Functions kept per case: the largest, down to this share of the case's count.  The
# rest is summed into one line, so a history stays small (a few kB a case).
KEEP_SHARE = 1e-3


def compact(functions: dict[str, float], total: float) -> dict[str, float]:
    kept = {f: round(c, 1) for f, c in functions.items() if c >= KEEP_SHARE * total}
    rest = sum(functions.values()) - sum(kept.values())
    if rest > 0:
        kept["(other functions)"] = round(rest, 1)
    return kept


def sidecar_dir(results_dir: Path) -> Path:
    """``callgrind/`` in a machine's results folder (or in the results folder itself, for all machines)."""
    return results_dir / "callgrind"


def sidecar_path(folder: Path, commit: str, env_name: str) -> Path:
    return sidecar.path_for(folder, commit, env_name)


def save(folder: Path, commit: str, env_name: str, results: dict[str, dict], host: dict) -> Path:
    """Merge one measurement into the commit's per-function file (``.json.gz``: asv reads only ``.json``)."""
    path = sidecar_path(folder, commit, env_name)
    data = load_file(path) or {"format": _FORMAT, "commit": commit, "env_name": env_name, "cases": {}}
    data["host"] = host
    for key, r in results.items():
        if "instructions" in r:
            data["cases"][key] = {"instructions": r["instructions"], "calls": r["calls"],
                                  "functions": compact(r["functions"], r["instructions"])}
    sidecar.write(path, data)
    return path


def load_file(path: Path) -> dict | None:
    return sidecar.read(path)


def load(folder: Path, commit: str, env_name: str | None = None) -> dict[str, dict]:
    """The per-function counts of a commit's cases (every environment, or one), keyed by case."""
    cases: dict[str, dict] = {}
    for path in sorted(folder.glob(f"{commit[:8]}-*.json.gz")):
        data = load_file(path)
        if data and (env_name is None or data.get("env_name") == env_name):
            cases.update(data["cases"])
    return cases


@dataclass(frozen=True)
class FunctionDelta:
    function: str
    base: float
    head: float

    @property
    def change(self) -> float:
        return self.head - self.base


def delta(base: dict[str, float], head: dict[str, float], top: int = 5) -> list[FunctionDelta]:
    """The functions whose instructions per call changed most, BASE -> HEAD (CallgrindStats.delta's idea)."""
    rows = [FunctionDelta(f, base.get(f, 0.0), head.get(f, 0.0)) for f in set(base) | set(head)
            if f != "(other functions)"]
    rows = [r for r in rows if abs(r.change) >= 0.5]
    rows.sort(key=lambda r: -abs(r.change))
    return rows[:top]


def short_function(name: str, width: int = 90) -> str:
    """A C++ signature shortened for a table: arguments dropped, the tail kept."""
    depth, out = 0, []
    for ch in name:  # drop argument lists and template arguments
        if ch in "(<":
            depth += 1
        elif ch in ")>":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(ch)
    text = "".join(out).strip() or name
    return text if len(text) <= width else "..." + text[-(width - 3):]


def format_delta(rows: list[FunctionDelta]) -> list[str]:
    return [f"{r.change:+.0f} instructions/call in {short_function(r.function)} ({r.base:.0f} -> {r.head:.0f})"
            for r in rows]


def host_info() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "valgrind": callgrind.version() if shutil.which("valgrind") else ""}
