"""How long the summary page takes to build from a long history: 20 commits x the default sweep.

Writes a synthetic asv results folder (one machine, every registered implementation,
every default-sweep shape and dtype, every benchmark of the suite with asv's
statistics; wall time wandering 20% between commits as on a shared runner,
instruction counts with a few 30% steps so the history has changes to draw), then
builds the page from it several times in one process and prints the median.

    python benchmarks/report_build.py [--commits 20] [--builds 5] [--keep DIR]
    python benchmarks/report_build.py --results DIR/results   # build an existing folder

To time another version of the report on the same folder, put its checkout first on
the path: ``git worktree add /tmp/old REV; PYTHONPATH=/tmp/old python
benchmarks/report_build.py --results DIR/results``.

The issue's budget is 2 s for 20 commits on the project's 2-core VM; figures are in
benchmarks/README.md ("The summary page's build time").
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after $PYTHONPATH: another checkout there is the one timed



from linear_impls import registry, suite, sweep  # noqa: E402

MACHINE = {"arch": "x86_64", "cpu": "synthetic", "machine": "synthetic", "num_cpu": "2", "os": "Linux",
           "ram": "25276063744"}
ENV = "virtualenv-py3.11-torch2.13.0"


def synthetic_history(folder: Path, n_commits: int, seed: int = 0) -> int:
    """Write ``n_commits`` results files; returns the number of cases per commit."""
    # Here, not at the top: asv imports every module of this folder in its environments, which lack asv.
    from linear_impls import results

    rng = random.Random(seed)
    impls = registry.names()
    default = sweep.SWEEPS["default"]
    shapes, dtypes, modes = list(default.shapes), list(default.dtypes), list(sweep.MODES)
    base = {(i, s, d): rng.uniform(2e-6, 2e-3) for i in impls for s in shapes for d in dtypes}
    stepped = set(rng.sample(sorted(k for k in base if k[2] in default.instruction_dtypes), 6))
    n_cases = 0
    for c in range(n_commits):
        commit = hashlib.sha1(f"commit {c}".encode()).hexdigest()
        wander = rng.uniform(0.8, 1.2)

        def timed(t: float) -> dict:
            return {"result": t, "ci_99_a": t * 0.95, "ci_99_b": t * 1.05, "q_25": t * 0.97, "q_75": t * 1.03,
                    "number": 100, "repeat": 10}

        fwd, train, ratio, instr, mem = [], [], [], [], []
        for i in impls:
            for s in shapes:
                for d in dtypes:
                    t = base[(i, s, d)] * wander * rng.uniform(0.95, 1.05)
                    fwd.append(timed(t))
                    train.append(timed(3 * t))
                    step = 1.3 if (i, s, d) in stepped and c >= n_commits // 2 else 1.0
                    for m in modes:
                        ratio.append(base[(i, s, d)] / base[("f_linear", s, d)] * rng.uniform(0.97, 1.03))
                        instr.append(float(round(base[(i, s, d)] * 1e10 * (3 if m != "forward" else 1) * step))
                                     if d in default.instruction_dtypes else float("nan"))
                        mem.append(float(2**20 * (1 + shapes.index(s))) if d in default.memory_dtypes
                                   else float("nan"))
        n_cases = len(fwd) + len(train) + len(ratio) + len(instr) + len(mem)
        results.write_file(folder, MACHINE, commit, 1_790_000_000_000 + c * 3_600_000, ENV, {
            suite.wall_time("forward").asv_name: ([impls, shapes, dtypes, ["cpu"]], fwd),
            suite.wall_time("forward_backward").asv_name: ([impls, shapes, dtypes, ["cpu"]], train),
            suite.BY_KIND["ratio"].asv_name: ([impls, shapes, dtypes, ["cpu"], modes], ratio),
            suite.BY_KIND["instructions"].asv_name: ([impls, shapes, dtypes, ["cpu"], modes], instr),
            suite.BY_KIND["memory"].asv_name: ([impls, shapes, dtypes, modes], mem),
            "bench_linear.Environment.track_threads": ([], [2.0]),
        })
    return n_cases


def main() -> None:
    from linear_impls.report import build_report

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--builds", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="write the results and page here instead of a temporary folder")
    parser.add_argument("--results", type=Path, help="build this results folder instead of writing one")
    args = parser.parse_args()
    import linear_impls

    print(f"timing the report of {Path(linear_impls.__file__).parent.parent}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        results_dir = args.results or folder / "results"
        if args.results is None:
            n = synthetic_history(results_dir, args.commits)
            print(f"{args.commits} commits x {n} results per commit ({len(registry.names())} implementations)")
        times = []
        for _ in range(args.builds):
            t0 = time.perf_counter()
            # The project's asv.conf.json, as `linbench report` reads by default: its thresholds decide the history.
            summary = build_report(results_dir, folder / "index.html", asv_conf=ROOT / "asv.conf.json")
            times.append(time.perf_counter() - t0)
        size = (folder / "index.html").stat().st_size
        print(f"build_report: median {statistics.median(times):.2f} s over {args.builds} builds "
              f"(min {min(times):.2f}, max {max(times):.2f}); page {size / 1e6:.1f} MB, "
              f"{summary.n_changes} changes in the history")


if __name__ == "__main__":
    main()
