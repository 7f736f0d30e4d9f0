"""Do two independent runs give the first screen the same answer?

Runs the interleaved speedups (the catalogue's ``speedup``, float32, the default sweep's
shapes, every implementation and a plugin that computes F.linear twice) with real asv
twice, under two machine names, into a scratch results folder, then prints:

* the speedups and verdicts of f_linear, addmm and the twice plugin over nn_linear at
  512x1024x1024 and 8x128x768x3072, forward and training, in both runs (the same GEMM
  must read 0.95-1.05 and "same"; twice 0.45-0.55 and "slower");
* the share of cells whose speedups agree within 10% between the runs, and of equal verdicts;
* the null control (nn_linear against itself): its spread per case;
* each run's time.

    .venv/bin/python benchmarks/speedup_agreement.py [--runs 2] [--keep DIR]

It uses the project's asv.conf.json (a virtualenv) on HEAD: commit first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Both results are used, so a training step runs both backwards too: 0.5 in either mode
# (one discarded result would cost a forward alone, 0.75 of a training step).
TWICE = '''"""F.linear computed twice, both results used: a speedup of about 0.5 by construction."""
import torch.nn.functional as F

import linear_impls


@linear_impls.register_forward(description="F.linear, computed twice")
def twice_linear(x, weight, bias):
    return 0.5 * (F.linear(x, weight, bias) + F.linear(x, weight, bias))
'''
WATCHED = ("512x1024x1024", "8x128x768x3072")


def run_once(machine: str, results: Path, plugin_dir: Path, processes: int) -> float:
    from linear_impls import asvconf, sweep

    asv = str(Path(sys.executable).parent / "asv")
    from asv import util

    conf = util.load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    conf.update(results_dir=str(results), env_dir=str(ROOT / ".asv" / "env"), repo=str(ROOT),
                benchmark_dir=str(ROOT / "benchmarks"), html_dir=str(results.parent / "html"))
    config = results.parent / "asv.conf.json"
    config.write_text(json.dumps(conf))
    subprocess.run([asv, "machine", "--yes", "--machine", machine], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    float32 = dataclasses.replace(sweep.SWEEPS["default"], dtypes=("float32",))
    pattern = asvconf.case_patterns(float32, ["cpu"])["Speedup"]
    # The speedup worker's processes, and the cases it times (setup_cache cannot see -b).
    env = dict(os.environ, LINBENCH_SWEEP="default", LINEAR_IMPLS_PLUGINS="twice_linear",
               LINBENCH_PLUGIN_PATH=str(plugin_dir), LINBENCH_SPEEDUP_PROCESSES=str(processes),
               LINBENCH_SELECT=pattern)
    t0 = time.perf_counter()
    subprocess.run([asv, "--config", str(config), "run", "HEAD^!", "--machine", machine, "--record-samples",
                    "-b", pattern], cwd=ROOT, env=env, check=False, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="keep the scratch folder here")
    ap.add_argument("--no-run", action="store_true", help="only analyse what --keep's folder holds")
    ap.add_argument("--processes", type=int, help="processes per case (default: what linbench run uses)")
    args = ap.parse_args()
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="speedup-agreement-"))
    (scratch / "plugins").mkdir(parents=True, exist_ok=True)
    (scratch / "plugins" / "twice_linear.py").write_text(TWICE)
    results = scratch / "results"
    from linear_impls import bench

    processes = args.processes or bench.SPEEDUP_PROCESSES
    seconds = [] if args.no_run else [run_once(f"agree-{i}", results, scratch / "plugins", processes)
                                      for i in range(args.runs)]

    import pandas as pd

    from linear_impls.report import analysis, load_results

    data = load_results(results)
    # Only the speedups were run: a stand-in time row for each, which rates() gives its speedup.
    sp = data.frame[(data.frame["kind"] == "speedup") & (data.frame["status"] == "ok")]
    stand_in = sp.assign(kind="time", value=1.0, benchmark="stand-in")
    rated = analysis.rates(pd.concat([sp, stand_in]))
    rated["within_noise"] = analysis.within_noise(rated)
    key = ["impl", "shape", "dtype", "device", "mode"]
    runs = [g.set_index(key) for _, g in rated.groupby("machine")]
    print(f"{len(runs)} runs of the default sweep's float32 speedups, {', '.join(f'{s:.0f} s' for s in seconds)}")
    for shape in WATCHED:
        for mode in ("forward", "forward_backward"):
            cells = []
            for impl in ("f_linear", "addmm", "twice_linear"):
                vals = [f"{r.loc[(impl, shape, 'float32', 'cpu', mode), 'speedup']:.3f} "
                        f"{r.loc[(impl, shape, 'float32', 'cpu', mode), 'speedup_verdict']}"
                        if (impl, shape, "float32", "cpu", mode) in r.index else "n/a" for r in runs]
                cells.append(f"{impl}: {' | '.join(vals)}")
            print(f"  {shape} {mode}: " + "; ".join(cells))
    if len(runs) >= 2:
        a, b = runs[0], runs[1]
        both = a.index.intersection(b.index)
        rel = (a.loc[both, "speedup"] / b.loc[both, "speedup"]).astype(float)
        agree = ((rel < 1.10) & (rel > 1 / 1.10)).mean()
        same_verdict = (a.loc[both, "speedup_verdict"] == b.loc[both, "speedup_verdict"]).mean()
        print(f"cells in both runs: {len(both)}; speedups within 10%: {agree:.1%}; equal verdicts: {same_verdict:.1%}")
        worst = rel.map(lambda v: max(v, 1 / v)).sort_values(ascending=False).head(5)
        print("  widest disagreements: " + ", ".join(f"{'/'.join(i[:2])} {i[4]} {v:.2f}x" for i, v in worst.items()))
        differ = both[a.loc[both, "speedup_verdict"] != b.loc[both, "speedup_verdict"]]
        opposite = [i for i in differ
                    if {a.loc[i, "speedup_verdict"], b.loc[i, "speedup_verdict"]} == {"faster", "slower"}]
        print(f"  verdicts that differ: {len(differ)}, of which faster in one run and slower in the other: "
              f"{len(opposite)}; the rest same in one run, beside the 1.05x boundary in the other")
        for i in differ[:10]:
            print(f"  verdicts differ: {i[0]} {i[1]} {i[4]}: {a.loc[i, 'speedup']:.3f} {a.loc[i, 'speedup_verdict']} "
                  f"[{a.loc[i, 'low']:.3f}, {a.loc[i, 'high']:.3f}] vs {b.loc[i, 'speedup']:.3f} "
                  f"{b.loc[i, 'speedup_verdict']} [{b.loc[i, 'low']:.3f}, {b.loc[i, 'high']:.3f}]")
    for r, name in zip(runs, ("first", "second"), strict=False):
        null = r.xs("nn_linear", level="impl")
        spread = (null["null_high"] / null["null_low"]).astype(float)
        print(f"null control ({name} run): nn_linear against itself {null['speedup'].min():.3f}-"
              f"{null['speedup'].max():.3f}; its process spread median {spread.median():.3f}x, "
              f"worst {spread.max():.3f}x")
    print(f"scratch: {scratch}")


if __name__ == "__main__":
    main()
