"""The one reader of asv results files: the summary page, ``linbench run``, the gate and the scripts.

Reads through asv's own ``asv.results.Results`` (what ``asv publish`` reads with), so a
file asv can read is read the same way here, statistics included (the 99% confidence
interval, quartiles, number and repeat that asv_runner records).  A file asv cannot
read is reported with asv's reason, never half-read.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from asv import results as asv_results
from asv import util as asv_util

SKIP_NAMES = {"machine.json", "benchmarks.json"}


class UnreadableResults(Exception):
    """A JSON file in a results folder that is not an asv results file; the message says why."""


@dataclass(frozen=True)
class RecordedCase:
    """One parameter combination of one benchmark in one results file."""

    benchmark: str
    params: tuple[str, ...]  # as asv stores them: repr strings, "'f_linear'"
    value: float | None  # None: failed in asv; NaN: skipped (n/a)
    stats: dict | None  # ci_99_a, ci_99_b, q_25, q_75, number, repeat (what was recorded)
    samples: list | None
    started_at: float | None

    @property
    def key(self) -> str:
        """``name(param, ...)``: the case as asv's ``-b`` regexes and ``linbench run --resume`` name it."""
        return f"{self.benchmark}({', '.join(self.params)})"

    @property
    def recorded(self) -> bool:
        """A value or a failure; False for a case asv skipped (NaN)."""
        return self.value is None or not math.isnan(self.value)


def read(path: Path) -> asv_results.Results:
    """One results file; UnreadableResults with the reason when asv cannot read it."""
    try:
        return asv_results.Results.load(str(path))
    except asv_util.UserError as exc:
        # asv names the file (absolute) in its message; the caller names it already.
        raise UnreadableResults(re.sub(r"\s*(in file |results file )?'[^']*\.json'", "", str(exc))) from None
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise UnreadableResults(f"{type(exc).__name__}: {exc}") from None


def result_paths(results_dir: Path, commit_prefix: str = "", machine: str | None = None) -> list[Path]:
    """Candidate results files under ``results_dir`` (``<machine>/<commit>-<env>.json``), sorted."""
    folder = Path(results_dir) / machine if machine else Path(results_dir)
    pattern = f"{commit_prefix[:8]}*.json" if machine else f"*/{commit_prefix[:8]}*.json"
    return sorted(p for p in folder.glob(pattern) if p.name not in SKIP_NAMES)


def iter_files(results_dir: Path, commit_prefix: str = "", machine: str | None = None,
               envs: tuple[str, ...] | list[str] | None = None) -> Iterator[asv_results.Results]:
    """Every readable results file: of one commit (prefix), one machine, some environments."""
    for path in result_paths(results_dir, commit_prefix, machine):
        try:
            res = read(path)
        except UnreadableResults:
            continue
        if envs is not None and res.env_name not in envs:
            continue
        yield res


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of one results file, columns aligned with the product of ``params``."""

    name: str
    params: list[list[str]]  # the parameter axes, asv's repr strings
    values: list  # per combination: a float, None (failed) or NaN (skipped)
    stats: list  # per combination: a dict of asv's statistics, or None
    samples: list
    started_at: float | None
    error: str | None = None  # why asv could not read its values (then values, stats, samples are empty)


def iter_benchmarks(res: asv_results.Results) -> Iterator[Benchmark]:
    """Every benchmark of a results file, as asv's own accessors give it."""
    started = res.started_at
    for name in res.get_all_result_keys():
        params = res.get_result_params(name) or []
        if not isinstance(params, list) or not all(isinstance(axis, list) for axis in params):
            continue
        n = math.prod(len(axis) for axis in params)
        try:
            values = _aligned(res.get_result_value(name, params), n)
            stats = _aligned(res.get_result_stats(name, params), n)
            samples = _aligned(res.get_result_samples(name, params), n)
        except (TypeError, ValueError, KeyError, IndexError) as exc:  # a hand-edited or truncated entry
            yield Benchmark(name, params, [], [], [], started.get(name), f"{type(exc).__name__}: {exc}")
            continue
        yield Benchmark(name, params, values, stats, samples, started.get(name))


def iter_cases(res: asv_results.Results) -> Iterator[RecordedCase]:
    """Every case of a results file, in asv's order (the product of the parameter axes)."""
    for b in iter_benchmarks(res):
        if b.error:
            continue
        for combo, value, stat, smp in zip(itertools.product(*b.params), b.values, b.stats, b.samples, strict=True):
            yield RecordedCase(b.name, tuple(combo), value, stat, smp, b.started_at)


def _aligned(values: object, n: int) -> list:
    """asv returns a bare value for an unparametrized benchmark, a list otherwise."""
    if values is None:
        return [None] * n
    if not isinstance(values, list):
        values = [values]
    return values if len(values) == n else [None] * n


RESULT_COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a", "stats_ci_99_b",
                  "stats_q_25", "stats_q_75", "stats_number", "stats_repeat", "samples", "profile"]


def write_file(folder: Path, machine: dict, commit: str, date_ms: int, env: str,
                       benchmarks: dict[str, tuple[list[list], list]]) -> Path:
    """Write one results file as asv 0.6 writes it: for tests and synthetic histories.

    ``benchmarks``: {name: (param axes of plain values, rows)}, each row either a
    value (a float, None for failed, NaN for skipped) or a dict with ``result``
    and any of ``ci_99_a``, ``ci_99_b``, ``q_25``, ``q_75``, ``number``, ``repeat``, ``samples``.
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
                         column("number"), column("repeat"), column("samples"), None]
    data = {"commit_hash": commit, "env_name": env, "date": date_ms,
            "params": {k: v for k, v in machine.items() if k != "version"} | {"python": "3.11", "torch": "2.13.0"},
            "python": "3.11", "requirements": {"torch": "2.13.0"}, "env_vars": {},
            "result_columns": RESULT_COLUMNS, "results": results, "durations": {}, "version": 2}
    path = mdir / f"{commit[:8]}-{env}.json"
    # NaN (a skipped case) is written as asv writes it: JSON's NaN extension.
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path
