"""Files kept beside asv's results: per commit and environment, gzipped JSON.

The instruction counts' per-function counts and the op traces are too large and too
structured for asv's own results files, so each sits in a folder of its own next to them,
one file per commit and environment (``.json.gz``: asv reads only ``.json``), written
whole and then renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path


def path_for(folder: Path, commit: str, env_name: str) -> Path:
    """``<folder>/<commit[:8]>-<env name, made safe>.json.gz``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", env_name)
    return Path(folder) / f"{commit[:8]}-{safe}.json.gz"


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with gzip.open(tmp, "wt") as f:
        json.dump(data, f, sort_keys=True)
    tmp.replace(path)


def read(path: Path) -> dict | None:
    """The file's object with a ``cases`` mapping; None when missing, unreadable or not one."""
    try:
        with gzip.open(path, "rt") as f:
            data = json.load(f)
    except (OSError, ValueError, EOFError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("cases"), dict) else None
