"""Do two asv runs of the same commit agree?  Each metric of the history, A/A.

Runs the sweep through ``linbench run`` twice on HEAD (or reuses a saved copy of a
first run's results file with ``--first``), then compares, case by case:

* instructions per call (``Instructions``): the share within 1% (target: 99%);
* the ratio to F.linear (``RelativeToTorch``): the share within 10% (target: 95%);
* wall time, for every timed case that takes at least 20 µs.  This shared
  machine's speed drifts by up to ~25% over tens of minutes, moving every case
  alike, so each run is also divided by its overall drift: the median of all
  cases' run2/run1 ratios.

Exit 0 when both deciding metrics meet their targets.  Each run's wall time is the
sweep's cost with every metric.

    .venv/bin/python benchmarks/repeatability.py [--sweep default] [--first saved.json]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asv_tools import ROOT, cases, results_file  # noqa: E402

from linear_impls import suite  # noqa: E402

TIMED = tuple(m.asv_name for m in suite.METRICS if m.kind == "time")
# The deciding metrics of the history: (benchmark, label, tolerance, target share).
DECIDING = ((suite.BY_KIND["instructions"].asv_name, "instructions per call", 0.01, 0.99),
            (suite.BY_KIND["ratio"].asv_name, "ratio to F.linear", 0.10, 0.95))


def _run(sweep: str, rev: str) -> float:
    t0 = time.perf_counter()
    # Samples kept, so the fastest-sample figure below can be computed from the same runs.
    subprocess.run([str(Path(sys.executable).parent / "linbench"), "run", "--sweep", sweep, "--commit", rev,
                    "--", "--record-samples"], cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _rev_parse(rev: str) -> str:
    return subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def _cases(data) -> dict[tuple, dict]:
    return {(name, *combo): v for name in TIMED for combo, v in cases(data, name).items()}


def _agreement(ratios: dict[tuple, float]) -> tuple[float, int, int]:
    """(drift, cases within 10% raw, within 10% after dividing by the drift)."""
    drift = statistics.median(ratios.values())
    return (drift, sum(abs(r - 1) <= 0.10 for r in ratios.values()),
            sum(abs(r / drift - 1) <= 0.10 for r in ratios.values()))


def main() -> int:
    # Here, not at the top: asv imports every module of this folder in its environments, which lack asv.
    from linear_impls import results

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="default")
    ap.add_argument("--first", type=Path, help="a saved copy of the first run's results file")
    ap.add_argument("--commit", default="HEAD", help="the commit both runs measure (default HEAD)")
    args = ap.parse_args()
    # A hash, not "HEAD": commits made while the runs go on must not change what the second measures.
    args.commit = _rev_parse(args.commit)
    if args.first:
        first = results.read(args.first)
        if not first.commit_hash.startswith(args.commit):
            raise SystemExit(f"--first holds commit {first.commit_hash[:8]}, not {args.commit}")
    else:
        print(f"run 1: {_run(args.sweep, args.commit):.0f} s", flush=True)
        saved = Path(tempfile.mkdtemp()) / "run1.json"
        shutil.copy(results_file(args.commit), saved)
        first = results.read(saved)
    print(f"run 2: {_run(args.sweep, args.commit):.0f} s", flush=True)
    second = results.read(results_file(args.commit))
    print(f"commit {second.commit_hash[:8]}, sweep {args.sweep}")
    ca, cb = _cases(first), _cases(second)
    a = {k: v["median"] for k, v in ca.items()}
    b = {k: v["median"] for k, v in cb.items()}
    common = [k for k in a if k in b and min(a[k], b[k]) >= 20e-6]
    ratios = {k: b[k] / a[k] for k in common}
    drift, raw_ok, cor_ok = _agreement(ratios)
    n = len(common)
    print(f"cases >= 20 us in both runs: {n}")
    print(f"overall drift (median run2/run1): {drift:.3f}")
    print(f"within 10%, raw:             {raw_ok}/{n} = {raw_ok / n:.1%}")
    print(f"within 10%, drift-corrected: {cor_ok}/{n} = {cor_ok / n:.1%}  (target >= 95%)")
    # A diagnostic, not asv's figure: interference on this machine only ever slows a call,
    # so the fastest sample of a case repeats far better than the median of its samples.
    fastest = {k: min(cb[k]["samples"]) / min(ca[k]["samples"]) for k in common
               if ca[k]["samples"] and cb[k]["samples"]}
    if fastest:
        _, _, fast_ok = _agreement(fastest)
        print(f"fastest sample instead of the median, drift-corrected: {fast_ok}/{len(fastest)} = "
              f"{fast_ok / len(fastest):.1%}")
    worst = sorted(ratios.items(), key=lambda kv: -abs(kv[1] / drift - 1))[:8]
    print("largest corrected disagreements:")
    for k, r in worst:
        kind = k[0].split(".")[1]
        print(f"  {r / drift:6.3f}  {kind:<9} {' '.join(k[1:])}  ({a[k] * 1e6:.1f} -> {b[k] * 1e6:.1f} us)")
    met = True
    for name, label, tol, target in DECIDING:
        ma, mb = cases(first, name), cases(second, name)
        both = [k for k in ma if k in mb]
        if not both:
            print(f"\n{label}: no case measured in both runs")
            met = False
            continue
        rel = {k: mb[k]["median"] / ma[k]["median"] for k in both}
        ok = sum(abs(r - 1) <= tol for r in rel.values())
        print(f"\n{label}: within {tol:.0%}: {ok}/{len(both)} = {ok / len(both):.1%}  (target >= {target:.0%})")
        for k, r in sorted(rel.items(), key=lambda kv: -abs(kv[1] - 1))[:5]:
            print(f"  {r:7.4f}  {' '.join(map(str, k))}  ({ma[k]['median']:.6g} -> {mb[k]['median']:.6g})")
        met &= ok / len(both) >= target
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
