"""Does asv record what torch.utils.benchmark measures?  Prints the comparison.

For f_linear and nn_linear at 1x64x64, 64x256x256 and 512x1024x1024 in float32 on
the CPU, runs the asv suite (real ``asv run`` on HEAD) and, in the same script,
``torch.utils.benchmark.Timer(...).blocked_autorange()`` on the same inputs and
thread count, before and after asv (bracketing it: this shared machine drifts).
The bracket is repeated (``--trials``, default 3) and each case's ratio is the
median over trials, so one burst of a noisy neighbour does not decide it.

    .venv/bin/python benchmarks/compare_timer.py [--trials 3]
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asv_tools import cases, head_results, run_asv  # noqa: E402

from linear_impls import bench, suite, sweep  # noqa: E402

IMPLS = ["f_linear", "nn_linear"]
SHAPES = ["1x64x64", "64x256x256", "512x1024x1024"]


def timer_medians() -> dict[tuple, float]:
    # Imported here, not at the top: asv imports every module of this folder in its
    # forkserver, and torch.utils.benchmark asks torch.cuda.is_available() at import.
    import torch.utils.benchmark as tb

    torch.set_num_threads(sweep.thread_count())
    out = {}
    for impl in IMPLS:
        for shape in SHAPES:
            case = bench.prepare(impl, shape, "float32", "cpu", "forward", check=False)
            m = tb.Timer(stmt="step()", globals={"step": case.step}, num_threads=sweep.thread_count()
                         ).blocked_autorange(min_run_time=1.0)
            out[(impl, shape)] = m.median
    return out


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description="asv's medians against torch.utils.benchmark")
    ap.add_argument("--trials", type=int, default=3)
    trials = ap.parse_args().trials
    forward = suite.wall_time("forward").asv_name
    pattern = (rf"^{re.escape(forward)}\('(?:f_linear|nn_linear)', "
               r"'(?:1x64x64|64x256x256|512x1024x1024)', 'float32', 'cpu'\)$")
    ratios: dict[tuple, list[float]] = {}
    print(f"threads={sweep.thread_count()}")
    print(f"{'trial':<6} {'case':<28} {'asv median':>11} {'Timer before':>13} {'Timer after':>12} {'asv/Timer':>10}")
    for trial in range(1, trials + 1):
        before = timer_medians()
        run_asv([pattern])
        after = timer_medians()
        recorded = cases(head_results(), forward)
        for impl in IMPLS:
            for shape in SHAPES:
                asv_med = recorded[(impl, shape, "float32", "cpu")]["median"]
                ratio = asv_med / statistics.mean([before[(impl, shape)], after[(impl, shape)]])
                ratios.setdefault((impl, shape), []).append(ratio)
                print(f"{trial:<6} {impl + ' ' + shape:<28} {asv_med * 1e6:>9.2f}us "
                      f"{before[(impl, shape)] * 1e6:>11.2f}us {after[(impl, shape)] * 1e6:>10.2f}us {ratio:>10.3f}")
    print("\nmedian asv/Timer over trials:")
    worst = 0.0
    for (impl, shape), rs in ratios.items():
        med = statistics.median(rs)
        worst = max(worst, abs(med - 1))
        print(f"  {impl + ' ' + shape:<28} {med:.3f}")
    print(f"worst disagreement {worst * 100:.1f}% (target: within 10%)")
    return 0 if worst <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
