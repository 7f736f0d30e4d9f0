"""The ``linbench`` command line (also ``python -m linear_impls``).

Exit codes: 0 all good, 1 a check failed (or the regression gate found a regression), 2 bad usage or
input that could not be used: always one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import gate, gpu, sweep
from .commands import (
    DEFAULT_CHECKS,
    UsageError,
    cmd_capture,
    cmd_check,
    cmd_check_worker,
    cmd_dispatch,
    cmd_gate,
    cmd_list,
    cmd_localize_asv,
    cmd_report,
    cmd_run,
    cmd_sweep,
    plugin_errors,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(message)


# --- main ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="linbench", description="Check and benchmark the ways of computing a linear layer.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("list", help="list the registered implementations")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("check", help="run the correctness checks against a float64 reference")
    p.add_argument("--impl", action="append", metavar="NAME_OR_GLOB",
                   help="implementation(s) to check (repeatable; default all)")
    p.add_argument("--device", action="append", metavar="cpu|cuda", help="device(s) to check on (default cpu)")
    p.add_argument("--dtype", action="append", metavar="DTYPE",
                   help=f"dtype(s) (default all: {', '.join(sweep.DTYPES)})")
    p.add_argument("--shape", action="append", metavar="SHAPE",
                   help="also check at this shape, e.g. 64x256x256 ('{batch x}in x out'; repeatable)")
    p.add_argument("--sweep", metavar="NAME_OR_FILE",
                   help="also check at a sweep's shapes, in its dtypes unless --dtype says: a sweep file "
                        "(linbench capture writes one) or a built-in sweep's name")
    p.add_argument("--json", action="store_true", help="print one JSON array of every check")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="time limit per case (default 60)")
    p.add_argument("--memory-limit", type=float, default=None, metavar="GIB",
                   help="memory a worker may allocate, in GiB (its data segment: address space merely reserved, "
                        "as a CUDA context reserves it, does not count; default none)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), metavar="N",
                   help="implementations checked at once (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress on the terminal")
    p.add_argument("--require-dropin", action="store_true",
                   help="exit 1 also when a module implementation is not a drop-in replacement for nn.Linear "
                        "(state_dict, initialisation, attributes, portability)")
    p.add_argument("--compile", metavar="NAMES", help="also check the torch.compile'd variants of these "
                   "implementations (comma-separated, or 'all'), and report their graph breaks")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("dispatch", help="the aten ops one call of an implementation runs (forward, backward)",
                       description="Recorded with a TorchDispatchMode: no timing, the same in every run. "
                                   "Exit status: 0, 1 the implementation failed, 2 bad input.")
    p.add_argument("impl")
    p.add_argument("shape", help="the sweep's notation: [batch x ...] rows x in x out, e.g. 8x128x768x3072")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--mode", default="forward", choices=sweep.MODES)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="the trace as JSON: ops with op, phase, shapes")
    p.set_defaults(func=cmd_dispatch)

    p = sub.add_parser("capture", help="record every linear-layer call of one step of your model as a sweep file",
                       description="TARGET is MODULE:CALLABLE (a dotted module or a .py path): a callable "
                                   "returning (model, example_args). One forward (or training step) runs; "
                                   "each F.linear call, however reached (nn.Linear, subclasses, "
                                   "nn.MultiheadAttention's projections), becomes a case with its count.")
    p.add_argument("target", metavar="MODULE:CALLABLE")
    p.add_argument("--mode", default="forward", choices=sweep.MODES,
                   help="forward (inference) or forward_backward (one training step); default forward")
    p.add_argument("--out", metavar="FILE", help="write the sweep file here (.toml, or .json); default: print it")
    p.add_argument("--name", help="the sweep's name (default: the callable's)")
    p.set_defaults(func=cmd_capture)

    sweeps = ", ".join(sweep.SWEEPS)
    p = sub.add_parser("sweep", help="list a sweep's cases and why any is skipped here")
    p.add_argument("sweep", nargs="?", default="default", metavar="NAME_OR_FILE",
                   help=f"a built-in sweep ({sweeps}) or a sweep file (.toml, .json); default: default")
    p.add_argument("--all", action="store_true", help="include devices this machine lacks")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("run", help="run a sweep with asv on HEAD (extra arguments go to asv run)",
                       description="Exit status: 0 all measured, 1 a case failed, 2 bad input, "
                                   "3 nothing new recorded (the last line says why).")
    p.add_argument("--sweep", default="default", metavar="NAME_OR_FILE",
                   help="quick (< 2 min, pull requests), default (< 10 min here), full (bigger machines), "
                        "or a sweep file: your model's cases (linbench capture)")
    p.add_argument("--resume", action="store_true",
                   help="skip cases the commit's results already hold on this asv machine, in every environment")
    p.add_argument("--dtype", action="append", metavar="DTYPE", help="only these of the sweep's dtypes")
    p.add_argument("--commit", default="HEAD", help="the commit to benchmark (default HEAD)")
    p.add_argument("--impl", action="append", metavar="PATTERN",
                   help="only these implementations (names or globs, repeatable; default every one)")
    p.add_argument("--new", type=int, metavar="N", nargs="?", const=10,
                   help="instead: HEAD's ancestors that have no results yet on this asv machine and "
                        "environments, the newest N (default 10); HEAD alone when there are none")
    p.add_argument("--device", action="append", metavar="cpu|cuda",
                   help="only the cases on this device (repeatable; default every device here): "
                        "cuda leaves out the CPU's timings, memory and instruction counts")
    p.add_argument("--only", choices=("answer", "history"),
                   help="answer: the first screen (speedups, wall time, ceilings, op traces, compiled "
                        "variants); history: what decides between commits (ratios to F.linear, "
                        "instruction counts) and peak memory; default both")
    p.add_argument("--after-chunk", metavar="COMMAND",
                   help="a shell command run after each asv invocation, e.g. 'sh .ci/results-branch push'")
    p.add_argument("--root", default=".", help="the linbench checkout (default .)")
    p.add_argument("asv_args", nargs=argparse.REMAINDER, help="passed to asv run (after --)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("gate", help="fail if HEAD is slower than BASE, or fails a gate BASE passed")
    p.add_argument("base", metavar="BASE", help="the commit to compare against (e.g. the merge base)")
    p.add_argument("head", metavar="HEAD", nargs="?", default="HEAD", help="the commit under test (default HEAD)")
    p.add_argument("--bench", metavar="REGEX", help="only benchmarks whose asv name matches, e.g. f_linear")
    p.add_argument("--factor", type=float, default=gate.DEFAULT_FACTOR, metavar="F",
                   help=f"a case regresses when HEAD's median is above F times BASE's (default {gate.DEFAULT_FACTOR})")
    p.add_argument("--sweep", default="quick", metavar="NAME_OR_FILE",
                   help=f"the cases compared: {sweeps}, or a sweep file (default quick)")
    p.add_argument("--instructions-factor", type=float, default=gate.DEFAULT_INSTRUCTIONS_FACTOR, metavar="F",
                   help="a CPU case regresses when it runs more than F times BASE's instructions per call "
                        f"(counted under callgrind; default {gate.DEFAULT_INSTRUCTIONS_FACTOR})")
    p.add_argument("--rounds", type=int, default=gate.DEFAULT_ROUNDS, metavar="N",
                   help=f"interleaved rounds per commit (default {gate.DEFAULT_ROUNDS})")
    p.add_argument("--json", metavar="FILE", help="also write every verdict to FILE")
    p.add_argument("--root", default=".", help="the linbench checkout (default .)")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("report", help="build the summary page from asv results")
    p.add_argument("--results", default=".asv/results", help="asv results folder (default .asv/results)")
    # --gates: the option's name before correctness was called "check" everywhere.
    p.add_argument("--checks", "--gates", dest="checks", action="append", metavar="FILE",
                   help=f"'linbench check --json' output (repeatable: one per runner; default {DEFAULT_CHECKS})")
    p.add_argument("--out", default="reports/index.html", help="the page to write (default reports/index.html)")
    p.add_argument("--asv-html", default="asv/index.html", help="asv's pages, relative to the page")
    p.add_argument("--asv-conf", default="asv.conf.json",
                   help="asv.conf.json whose regressions_thresholds decide a change in the history "
                        "(default asv.conf.json; asv's 5%% where it is missing)")
    p.add_argument("--pytest-benchmark", action="append", default=[], metavar="PATH",
                   help="also show pytest-benchmark runs of benchmarks/quick_gate: a JSON file or a folder "
                        "searched for *.json, e.g. .benchmarks (repeatable)")
    p.add_argument("--sweep", action="append", metavar="FILE",
                   help="a model's sweep file: the page gives its linear time per step (repeatable; those "
                        "linbench run --sweep FILE kept beside the results are read anyway)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("localize-asv", help="point asv's HTML at local copies of its JS/CSS (offline viewing)")
    p.add_argument("--html", default="reports/asv", help="asv's html_dir (default reports/asv)")
    p.add_argument("--cache", default=".asv/vendor", help="where npm tarballs are kept (default .asv/vendor)")
    p.set_defaults(func=cmd_localize_asv)

    return parser


WORKER_COMMAND = "_check-worker"


def build_worker_parser() -> argparse.ArgumentParser:
    """The internal command ``linbench check`` runs in a child process per implementation.

    Parsed apart from the public commands, so it never shows in their usage or errors.
    """
    p = _Parser(prog=f"linbench {WORKER_COMMAND}")
    p.add_argument("--impl", action="append", required=True)
    p.add_argument("--device", action="append")
    p.add_argument("--dtype", action="append")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--progress", required=True, help="the supervisor's progress file (linear_impls.supervise)")
    p.add_argument("--shape", action="append")
    p.set_defaults(func=cmd_check_worker, command=WORKER_COMMAND)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    worker = argv[:1] == [WORKER_COMMAND]
    parser = build_worker_parser() if worker else build_parser()
    # Every check and run of this process and its workers under the same matmul precision.
    gpu.pin_precision()
    try:
        args = parser.parse_args(argv[1:] if worker else argv)
        # The gate loads plugins in each commit's own checkout and asv environment, where a
        # plugin versioned in linbench_plugins/ may exist at one commit and not the other.
        if args.command in (WORKER_COMMAND, "gate"):
            load_errors = []
        elif args.command == "run":  # a plugin that does not load stops the run before anything is timed
            if plugin_errors("nothing was run: a sweep without it would leave it out in silence"):
                return 2
            load_errors = []
        else:
            load_errors = plugin_errors()
        code = args.func(args)
        return 2 if load_errors and code == 0 else code
    except UsageError as exc:
        print(f"linbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("linbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `linbench list | head`: the reader left; nothing to report.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
