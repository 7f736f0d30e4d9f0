"""What each ``linbench`` command does (``cli`` parses the command line and calls these).

Each ``cmd_*`` takes the parsed arguments and returns the exit status; bad input raises
``UsageError``, which ``cli.main`` prints as one line with exit status 2.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from . import gate, registry, sweep


class UsageError(Exception):
    """Bad input: reported as one line, exit code 2."""


def _warn(msg: str) -> None:
    print(f"linbench: warning: {msg}", file=sys.stderr)


def plugin_errors(consequence: str = "built-ins still available") -> list[str]:
    errors = registry.load_plugins()
    for e in errors:
        print(f"linbench: error: {e} ({consequence})", file=sys.stderr)
    return errors


def _select(patterns):
    try:
        return registry.select(patterns)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None


def _devices(requested: list[str] | None) -> list[str]:
    available = sweep.available_devices()
    if not requested:
        return ["cpu"]
    for d in requested:
        if d not in sweep.DEVICES:
            raise UsageError(f"unknown device {d!r}; known: {', '.join(sweep.DEVICES)}")
        if d not in available:
            raise UsageError(f"device {d!r} is not available on this machine ({sweep.device_unavailable_reason(d)}); "
                             f"available: {', '.join(available)}")
    return list(dict.fromkeys(requested))


def _shape(text: str) -> sweep.Shape:
    try:
        return sweep.parse_shape(text)
    except sweep.ShapeError as exc:
        raise UsageError(str(exc)) from None


def _sweep(ref: str) -> sweep.Sweep:
    """A built-in sweep's name or a sweep file's path; anything else is one line and exit 2."""
    try:
        return sweep.load(ref)
    except ValueError as exc:  # sweepfile.SweepFileError too
        raise UsageError(str(exc)) from None


def _dtypes(requested: list[str] | None) -> tuple[str, ...]:
    if not requested:
        return sweep.DTYPES
    for d in requested:
        if d not in sweep.DTYPES:
            raise UsageError(f"unknown dtype {d!r}; known: {', '.join(sweep.DTYPES)}")
    return tuple(dict.fromkeys(requested))


# --- list ------------------------------------------------------------------------------


def cmd_list(args) -> int:
    impls = _select(None)
    rows = [
        {"name": i.name, "expression": i.expression, "description": i.description,
         "limits": i.limits.describe(), "source": i.source}
        for i in impls
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['expression']}")
        print(f"{'':<{width}}  {r['description']}" + (f"  [limits: {r['limits']}]" if r["limits"] != "none" else "")
              + (f"  (from {r['source']})" if r["source"] != "builtin" else ""))
    return 0


# --- check -----------------------------------------------------------------------------


def cmd_check(args) -> int:
    from . import checkrun, compiled, dropin

    variants = _compile(args.compile)
    impls = _select(args.impl)
    if args.impl and variants:  # the variants of what --compile names are checked too
        impls += [registry.get(v) for v in variants if v not in {i.name for i in impls}]
    devices = _devices(args.device)
    dtypes = _dtypes(args.dtype)
    shapes = tuple(_shape(s).id for s in args.shape or [])
    if args.sweep:  # a model's shapes are checked like the built-in sweeps', in its dtypes
        sw = _sweep(args.sweep)
        shapes = tuple(dict.fromkeys(shapes + sw.shapes))
        if not args.dtype:
            dtypes = sw.dtypes
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout:g}")
    memory_limit = int(args.memory_limit * 2**30) if args.memory_limit else None
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    progress = sys.stderr.isatty() and not args.quiet
    plans = [checkrun.CheckPlan(impl, devices, dtypes, shapes) for impl in impls]
    total = sum(len(p.cases) for p in plans)
    counts = {"done": 0, "failed": 0}
    lock = threading.Lock()

    def on_result(res):
        with lock:
            counts["done"] += 1
            counts["failed"] += res.status == "fail"
            if progress:
                print(f"\rchecking {len(impls)} implementations: {counts['done']}/{total} checks, "
                      f"{counts['failed']} failed\033[K", end="", file=sys.stderr, flush=True)

    def run(plan):
        return checkrun.run_plan(plan, timeout=args.timeout, memory_limit=memory_limit, on_result=on_result,
                                 threads=1 if args.jobs > 1 else None)

    # Workers are separate processes; running two at once halves the torch start-up cost on 2 cores.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        all_results = [r for results in pool.map(run, plans) for r in results]
    if progress:
        print(file=sys.stderr)
    failed = [r for r in all_results if r.status == "fail" and not dropin.is_dropin(r.check)]
    not_dropin = [r for r in all_results if r.status == "fail" and dropin.is_dropin(r.check)]
    if args.json:
        print(json.dumps([r.to_dict() for r in all_results], indent=1))
    else:
        _print_check_table(all_results, failed, not_dropin)
    for name in sorted(i.name for i in impls if compiled.is_compiled(i.name)):
        device = compiled.explain_device(name, devices)
        if device is None:  # a CUDA-only variant, checked on the CPU: its checks say n/a
            continue
        try:
            got = compiled.explain(name, device=device)
        except Exception as exc:  # the variant does not even compile: its checks say why
            print(f"linbench: {name}: torch._dynamo.explain failed: {type(exc).__name__}: {exc}"[:300],
                  file=sys.stderr)
            continue
        # To stderr under --json: stdout stays one JSON array.
        print(f"{name}: {got['graphs']} graph{'s' if got['graphs'] != 1 else ''}, {got['graph_breaks']} graph "
              f"break{'s' if got['graph_breaks'] != 1 else ''}" + (f" ({'; '.join(got['reasons'])})"
                                                                  if got["reasons"] else ""),
              file=sys.stderr if args.json else sys.stdout)
    # A layer that is not a drop-in replacement may still compute the right outputs: that is
    # the verdict unless the user asks for both.
    return 1 if failed or (args.require_dropin and not_dropin) else 0


def _compile(value: str | None) -> list[str]:
    """Register the compiled variants ``--compile`` names; their worker processes register them
    from ``$LINBENCH_COMPILE``, which is set here."""
    from . import compiled

    if not value:
        return []
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n != "all" and n not in registry.names()]
    if unknown:
        raise UsageError(f"--compile: unknown implementation {unknown[0]!r}; known: {', '.join(registry.names())}")
    os.environ[compiled.ENV] = ",".join(names)
    return compiled.register_from_env()


def _print_check_table(results, failed, not_dropin) -> None:
    from . import dropin

    width = max([18, *(len(r.impl) for r in results)])
    if failed:
        print("FAILED CHECKS")
        for r in failed:
            shape = "x".join(map(str, r.shape)) or "()"
            print(f"  {r.impl:<{width}} {r.check:<8} {r.dtype:<8} {r.device:<4} {r.case:<26} {shape:<10} {r.reason}")
        print()
    if not_dropin:
        print("NOT A DROP-IN REPLACEMENT FOR nn.Linear (the outputs' verdict stands apart)")
        for r in not_dropin:
            print(f"  {r.impl:<{width}} {r.check.removeprefix(dropin.PREFIX):<12} {r.reason}")
        print()
    by_impl: dict[str, dict[str, int]] = {}
    # Module implementations: "yes", or the drop-in checks that failed.
    dropin_of: dict[str, list[str]] = {}
    # The worst passing error against float64 as a multiple of torch's own, per implementation and dtype.
    vs_torch: dict[str, dict[str, float]] = {}
    for r in results:
        if dropin.is_dropin(r.check):
            mine = dropin_of.setdefault(r.impl, [])
            if r.status == "fail":
                mine.append(r.check.removeprefix(dropin.PREFIX))
            continue
        counts = by_impl.setdefault(r.impl, {"pass": 0, "fail": 0, "skip": 0})
        counts[r.status] += 1
        if r.status == "pass" and r.torch_error_ratio is not None:
            mine = vs_torch.setdefault(r.impl, {})
            mine[r.dtype] = max(mine.get(r.dtype, 0.0), r.torch_error_ratio)
    dtypes = [d for d in sweep.DTYPES if any(d in v for v in vs_torch.values())]
    print(f"{'implementation':<{width + 2}} {'pass':>5} {'fail':>5} {'skip':>5}        {'drop-in':<22}"
          + (f"worst RMSE vs torch's: {' '.join(f'{d:>8}' for d in dtypes)}" if dtypes else ""))
    for name, c in by_impl.items():
        worst = " ".join(f"{vs_torch[name][d]:>7.2f}x" if d in vs_torch.get(name, {}) else f"{'–':>8}"
                         for d in dtypes)
        di = ("–" if name not in dropin_of else "yes" if not dropin_of[name]
              else "no: " + ", ".join(dropin_of[name]))
        print(f"{name:<{width + 2}} {c['pass']:>5} {c['fail']:>5} {c['skip']:>5}  {'FAIL' if c['fail'] else 'ok  '}  "
              + f"{di:<22}" + (f"{'':22}{worst}" if dtypes else ""))
    n_fail = sum(c["fail"] for c in by_impl.values())
    print(f"\n{sum(c['pass'] + c['fail'] + c['skip'] for c in by_impl.values())} checks, {n_fail} failed, "
          f"{len(by_impl)} implementations"
          + (f", {sum(1 for c in by_impl.values() if c['fail'])} with failures" if n_fail else "")
          + (f"; {len(dropin_of)} modules, {sum(1 for v in dropin_of.values() if not v)} drop-in replacements "
             "for nn.Linear" if dropin_of else ""))


def cmd_check_worker(args) -> int:
    from . import checkrun

    impl = registry.get(args.impl[0])
    return checkrun.worker_main(impl, args.device or ["cpu"], tuple(args.dtype or sweep.DTYPES), args.start,
                                args.progress, tuple(args.shape or ()))


# --- sweep / run ----------------------------------------------------------------------


def cmd_dispatch(args) -> int:
    from . import dispatch

    if args.impl not in registry.names():
        raise UsageError(f"unknown implementation {args.impl!r}; `linbench list` shows them")
    shape = _shape(args.shape)
    dtype = _dtypes([args.dtype])[0]
    device = _devices([args.device])[0]
    impl = registry.get(args.impl)
    reason = impl.limits.excludes(dtype=dtype, device=device, rank=len(shape.input_shape)) or impl.unavailable(device)
    if reason:
        raise UsageError(f"{args.impl} does not run {shape.id} {dtype} on {device}: {reason}")
    try:
        t = dispatch.trace(args.impl, shape.id, dtype, device, args.mode)
    except Exception as exc:  # a faulty implementation: its reason, not a traceback
        print(f"linbench: {args.impl} {shape.id} {dtype} {device} {args.mode} failed: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(t.to_dict(), indent=1))
    else:
        print(dispatch.format_trace(t))
    return 0


def cmd_sweep(args) -> int:
    from . import registry as reg

    sw = _sweep(args.sweep)
    counts = _file_counts(sw)
    rows = []
    for impl, shape, dtype, device, mode in sweep.cases(sw, reg.select(None), modes=sweep.MODES):
        reason = sweep.skip_reason(impl, shape, dtype, device, mode, sw)
        row = {"impl": impl.name, "shape": shape.id, "dtype": dtype, "device": device,
               "mode": mode, "run": reason is None, "reason": reason or ""}
        if counts:  # a sweep file's cases only, each with its calls per model step
            if (shape.id, dtype, device) not in counts or mode not in sw.modes:
                continue
            row["count"] = counts[(shape.id, dtype, device)]
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        if r["device"] in sweep.available_devices() or args.all:
            count = f"x{r['count']:<4} " if "count" in r else ""
            print(f"{'run ' if r['run'] else 'skip'} {r['impl']:<18} {r['shape']:<18} {count}{r['dtype']:<9} "
                  f"{r['device']:<5} {r['mode']:<17} {r['reason']}")
    n = sum(r["run"] for r in rows)
    print(f"\n{sw.name!r} sweep{' (' + sw.path + ')' if sw.path else ''}: {n} cases to run, "
          f"{len(rows) - n} skipped (per-call budget {sw.max_call_seconds * 1e3:g} ms)"
          + ("; xN: calls per model step" if counts else ""))
    return 0


def cmd_capture(args) -> int:
    from pathlib import Path

    from . import capture, sweepfile

    if args.out and Path(args.out).suffix not in sweepfile.SUFFIXES:
        raise UsageError(f"--out {args.out}: a sweep file ends in .toml or .json")
    print(f"linbench: capturing one {'training step' if args.mode == 'forward_backward' else 'forward'} of "
          f"{args.target}", file=sys.stderr, flush=True)
    try:
        sf, cap = capture.capture_target(args.target, args.mode, args.name)
    except capture.CaptureError as exc:
        raise UsageError(str(exc)) from None
    text = sweepfile.dump_json(sf) if args.out and args.out.endswith(".json") else sweepfile.dumps(
        sf, header=f"A linbench sweep file: the linear-layer calls of one model step, written by\n"
                   f"{sf.source}.\nlinbench run --sweep THIS_FILE times exactly these cases; count = calls per step.")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    total = sum(c.count for c in sf.cases)
    gflop = sum(c.flops for c in cap.calls) / 1e9
    print(f"linbench: {total} linear calls per step in {len(sf.cases)} cases ({gflop:.3g} GFLOP forward)"
          + (f", written to {args.out}" if args.out else "")
          + "".join(f"; {n} calls not recorded: {why}" for why, n in cap.skipped.items()), file=sys.stderr)
    return 0


def _file_counts(sw: sweep.Sweep) -> dict:
    """A sweep file's calls per model step of each (shape, dtype, device); {} for a built-in sweep."""
    from . import sweepfile

    return sweepfile.load(sw.path).counts() if sw.path else {}


def cmd_run(args) -> int:
    from pathlib import Path

    from . import asvrun, plugins

    root = Path(args.root).resolve()
    if not (root / "asv.conf.json").is_file():
        raise UsageError(f"no asv.conf.json in {root}: run from the linbench checkout or pass --root")
    dtypes = list(_dtypes(args.dtype)) if args.dtype else None
    sw = _sweep(args.sweep)
    if dtypes and not set(dtypes) & set(sw.dtypes):
        raise UsageError(f"the {sw.name!r} sweep has no {', '.join(dtypes)} cases; "
                         f"it runs {', '.join(sw.dtypes)}")
    asv_args = args.asv_args[1:] if args.asv_args[:1] == ["--"] else args.asv_args
    impls = [i.name for i in _select(args.impl)] if args.impl else None
    # Every device here unless told: a GPU runner asks for cuda alone, and gets one line and
    # exit 2 where CUDA is not there rather than a green run of n/a cases.
    devices = _devices(args.device) if args.device else None
    try:
        asvrun.resolve_commit(root, args.commit)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        target = asvrun.Target.of(root, asv_args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    commits = None
    if args.new is not None:
        if args.new < 1:
            raise UsageError(f"--new takes the most commits to run, at least 1; got {args.new}")
        if args.commit != "HEAD" or args.resume:
            raise UsageError("--new picks its own commits: it cannot be combined with --commit or --resume")
        commits = asvrun.new_commits(root, root / ".asv" / "results", args.new, target)
        if not commits:
            print(f"linbench: nothing new to record: HEAD and its ancestors already have results under "
                  f"{target.describe()}")
            return asvrun.NOTHING_NEW
        print(f"linbench: {len(commits)} new commits: {', '.join(c[:8] for c in commits)}", flush=True)
    try:
        code = asvrun.run_sweep(sw.ref, asv_args, root=root, target=target, resume=args.resume,
                                dtypes=dtypes, commit=args.commit, commits=commits, impls=impls,
                                devices=devices, after_chunk=args.after_chunk,
                                roles=(args.only,) if args.only else asvrun.ROLES)
    except plugins.PluginError as exc:
        raise UsageError(str(exc)) from None
    # asv's 2 (a benchmark failed) is linbench's 1 (a case failed); 2 means bad input here.
    return 0 if code == 0 else (1 if code == 2 else code)


def cmd_gate(args) -> int:
    from pathlib import Path

    root = Path(args.root).resolve()
    if not (root / "asv.conf.json").is_file():
        raise UsageError(f"no asv.conf.json in {root}: run from the linbench checkout or pass --root")
    if not args.factor > 1:
        raise UsageError(f"--factor must be above 1 (1.10 flags cases 10% slower), got {args.factor:g}")
    if not args.instructions_factor > 1:
        raise UsageError(f"--instructions-factor must be above 1 (1.02 flags 2% more instructions), "
                         f"got {args.instructions_factor:g}")
    if args.rounds < 2:
        raise UsageError(f"--rounds must be at least 2 (interleaving needs two), got {args.rounds}")
    try:
        result = gate.run_gate(root, args.base, args.head, sweep_name=_sweep(args.sweep).ref, user_regex=args.bench,
                               factor=args.factor, rounds=args.rounds,
                               instructions_factor=args.instructions_factor)
    except (ValueError, gate.GateError) as exc:
        raise UsageError(str(exc)) from None
    from .report.gate_text import format_result

    print(format_result(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1))
    return 1 if result.regressed else 0


# --- report ---------------------------------------------------------------------------


def cmd_report(args) -> int:
    from pathlib import Path

    from . import report

    # Several files (one per runner: the CPU's and the GPU's checks) are read as one.
    # --checks "": no checks file at all.
    checks_json = [Path(c) for c in args.checks if c] if args.checks else [Path(DEFAULT_CHECKS)]
    if not checks_json or (not args.checks and not checks_json[0].exists()):
        checks_json = None  # the default file is optional; an explicit one must exist
    try:
        summary = report.build_report(Path(args.results), Path(args.out), checks_json=checks_json,
                                      asv_html=args.asv_html,
                                      pytest_benchmark=[Path(p) for p in args.pytest_benchmark],
                                      asv_conf=Path(args.asv_conf) if args.asv_conf else None,
                                      sweep_files=[Path(s) for s in args.sweep or []])
    except report.ReportError as exc:
        raise UsageError(str(exc)) from None
    for w in summary.warnings:
        _warn(w)
    print(f"linbench: wrote {summary.out} ({summary.n_cases} cases from {summary.n_results_files} results files"
          + (f", {summary.n_missing} cases of the sweeps run missing" if summary.n_missing else "")
          + (f"; {summary.n_pytest_cases} cases from {summary.n_pytest_runs} pytest-benchmark runs"
             if summary.n_pytest_runs else "") + ")")
    return 0


DEFAULT_CHECKS = "reports/checks.json"


def cmd_localize_asv(args) -> int:
    import subprocess
    from pathlib import Path

    from . import asvassets

    html = Path(args.html)
    if not (html / "index.html").is_file():
        raise UsageError(f"no asv pages in {html}: run `asv publish` first")
    try:
        done = asvassets.localize(html, Path(args.cache))
    except (RuntimeError, subprocess.SubprocessError, OSError, KeyError) as exc:
        _warn(f"asv's pages still load their libraries from CDNs: {exc}")
        return 0
    print(f"linbench: asv's pages now load {len(done)} libraries from {html / 'vendor'}")
    return 0
