"""How good is ``linbench gate`` on this machine?  False alarms, detection power, wall time.

Builds a scratch clone of this checkout's HEAD and, in it, these commits:

* ``aa``: HEAD plus a comment (an A/A pair: any alarm is false);
* ``slow20`` / ``slow10``: ``f_linear``'s forward does its work twice on every 5th
  (10th) call when its weight is 256x256, i.e. only at ``64x256x256``: 20% (10%)
  more time for that one case, tracking the machine's speed as the real work does;
* ``work5``: when its weight is 256x256, ``f_linear`` also computes two throw-away
  elementwise products of its output: about 5% more instructions at ``64x256x256``
  (decided in the factory, so other shapes run the same code), which the
  instruction counts must catch (the ratio's noise hides 5%);
* ``plugin``: a plugin ``linbench_plugins/gate_trial.py`` (``trial_linear``, a copy
  of F.linear loaded through ``LINEAR_IMPLS_PLUGINS``), and ``plugin_slow20``, the
  same plugin slowed the same way: plugins must take part in the gate like built-ins.

then runs the real ``linbench gate`` CLI for each scenario, rounds of scenarios
interleaved so the machine's drift spreads over all of them, and tallies:

    .venv/bin/python benchmarks/gate_trials.py [--trials 5] [--scenarios aa,slow20,slow10,work5,plugin20]
    .venv/bin/python benchmarks/gate_trials.py --scenarios aa,work5 -- --bench f_linear   # minutes, not an hour

A detection is the planted case flagged ``slower``; any other case flagged is a
false alarm.  Run it on a quiet machine: everything else running moves timings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asv_tools import scratch_clone  # noqa: E402

LINBENCH = Path(sys.executable).parent / "linbench"
PLANTED_SHAPE = "'64x256x256'"

F_LINEAR = '''def f_linear(weight, bias):
    def forward(x):
        return F.linear(x, weight, bias)

    return forward
'''


def _slowed(name: str, every: int) -> str:
    return f'''def {name}(weight, bias):
    def forward(x):
        return F.linear(x, weight, bias)

    if tuple(weight.shape) == (256, 256):  # planted by benchmarks/gate_trials.py
        calls = iter(range(1 << 62))

        def forward(x):  # noqa: F811
            if next(calls) % {every} == 0:
                F.linear(x, weight, bias)  # {100 // every}% more work, on average
            return F.linear(x, weight, bias)

    return forward
'''


# About 5% more work at one shape, every call (+4.96% instructions measured on addmm).
F_LINEAR_WORK5 = '''def f_linear(weight, bias):
    def forward(x):
        return F.linear(x, weight, bias)

    if tuple(weight.shape) == (256, 256):  # planted by benchmarks/gate_trials.py
        def forward(x):  # noqa: F811
            y = F.linear(x, weight, bias)
            y * 1.0
            y * 1.0
            return y

    return forward
'''


PLUGIN = '''"""A copy of F.linear as a plugin: benchmarks/gate_trials.py slows it in a commit."""

import torch.nn.functional as F

from linear_impls import register


@register("trial_linear", description="F.linear, from a plugin (gate trials)", expression="F.linear(x, W, b)")
{body}'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, parent: str, edits: dict[str, str], message: str) -> str:
    git(repo, "checkout", "-q", "--detach", parent)
    for path, text in edits.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
        git(repo, "add", path)
    git(repo, "-c", "user.name=gate-trials", "-c", "user.email=trials@invalid", "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def build_scratch(scratch: Path) -> dict[str, tuple[str, str, str, str | None]]:
    """scenario -> (BASE, HEAD, LINEAR_IMPLS_PLUGINS, slowed implementation) in a fresh clone of HEAD."""
    scratch_clone(scratch)
    base = git(scratch, "rev-parse", "HEAD")
    builtins = (scratch / "linear_impls" / "builtins.py").read_text()
    if F_LINEAR not in builtins:
        raise SystemExit("f_linear's source changed: update F_LINEAR in benchmarks/gate_trials.py")
    src = "linear_impls/builtins.py"
    aa = commit(scratch, base, {src: builtins + "# A comment: nothing else changes.\n"}, "A/A: a comment")
    slow20 = commit(scratch, base, {src: builtins.replace(F_LINEAR, _slowed("f_linear", 5))}, "f_linear 20% slower")
    slow10 = commit(scratch, base, {src: builtins.replace(F_LINEAR, _slowed("f_linear", 10))}, "f_linear 10% slower")
    work5 = commit(scratch, base, {src: builtins.replace(F_LINEAR, F_LINEAR_WORK5)}, "f_linear 5% more work")
    plugin_file = "linbench_plugins/gate_trial.py"
    plain = F_LINEAR.replace("f_linear", "trial_linear")
    p_base = commit(scratch, base, {plugin_file: PLUGIN.format(body=plain)}, "plugin trial_linear")
    p_slow = commit(scratch, p_base, {plugin_file: PLUGIN.format(body=_slowed("trial_linear", 5))},
                    "plugin trial_linear 20% slower")
    plugin_env = "linbench_plugins.gate_trial"
    return {"aa": (base, aa, "", None), "slow20": (base, slow20, "", "f_linear"),
            "slow10": (base, slow10, "", "f_linear"), "work5": (base, work5, "", "f_linear"),
            "plugin20": (p_base, p_slow, plugin_env, "trial_linear")}


def run_gate(scratch: Path, base: str, head: str, plugins: str, out: Path, extra: list[str]) -> dict:
    env = dict(os.environ)
    env.pop("LINEAR_IMPLS_PLUGINS", None)
    if plugins:
        env["LINEAR_IMPLS_PLUGINS"] = plugins
    cmd = [str(LINBENCH), "gate", base, head, "--root", str(scratch), "--json", str(out), *extra]
    if plugins:
        cmd += ["--bench", "trial_linear"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (out.with_suffix(".log")).write_text(proc.stderr + "\n" + proc.stdout)
    if proc.returncode == 2 or not out.exists():
        raise SystemExit(f"gate could not run (exit {proc.returncode}): "
                         f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}; log {out.with_suffix('.log')}")
    data = json.loads(out.read_text())
    data["exit"], data["wall"] = proc.returncode, wall
    return data


def _case(change: dict, impl: str | None, mode: str) -> bool:
    p = change["params"]
    return impl is not None and len(p) == 5 and p[:2] == [repr(impl), PLANTED_SHAPE] and p[4] == repr(mode)


def planted(change: dict, impl: str | None) -> bool:
    """The slowed case itself (its forward)."""
    return _case(change, impl, "forward")


def collateral(change: dict, impl: str | None) -> bool:
    """The slowed case's training step: its forward is a third of the work, so ~7% slower, truly."""
    return _case(change, impl, "forward_backward")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--scenarios", default="aa,slow20,slow10,plugin20")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/linbench-gate-trials"))
    ap.add_argument("gate_args", nargs=argparse.REMAINDER, help="passed to linbench gate (after --)")
    args = ap.parse_args()
    extra = args.gate_args[1:] if args.gate_args[:1] == ["--"] else args.gate_args
    scenarios = build_scratch(args.scratch)
    chosen = [s for s in args.scenarios.split(",") if s]
    for s in chosen:
        if s not in scenarios:
            raise SystemExit(f"unknown scenario {s!r}; choose from {', '.join(scenarios)}")
    outdir = args.scratch / "trials"
    outdir.mkdir()
    tally: dict[str, list[dict]] = {s: [] for s in chosen}
    for trial in range(1, args.trials + 1):
        for s in chosen:
            base, head, plugins, impl = scenarios[s]
            r = run_gate(args.scratch, base, head, plugins, outdir / f"{s}-{trial}.json", extra)
            flagged = [c for c in r["changes"] if c["verdict"] in ("slower", "broke")]
            hit = [c for c in flagged if planted(c, impl)]
            false = [c for c in flagged if not planted(c, impl) and not collateral(c, impl)]
            tally[s].append({"hit": bool(hit), "false": false, "exit": r["exit"], "wall": r["wall"],
                             "ratio": next((c["ratio"] for c in r["changes"] if planted(c, impl)), None)})
            print(f"trial {trial} {s:<9} exit {r['exit']}  {r['wall']:.0f} s  planted-case ratio "
                  f"{tally[s][-1]['ratio'] or float('nan'):.3f}  detected {bool(hit)}  "
                  f"false alarms {len(false)}" + "".join(f"\n    false: {c['label']} x{c['ratio']:.3f} "
                                                         f"p={c['p'] or float('nan'):.1e}" for c in false)
                  + "".join(f"\n    caught: {c['label']} x{c['ratio']:.4f} ({c['unit']})"
                            + "".join(f"\n      {f}" for f in c.get("functions") or ()) for c in hit), flush=True)
    print("\nSUMMARY (" + " ".join(extra or ["default gate settings"]) + ")")
    for s, rows in tally.items():
        walls = sorted(r["wall"] for r in rows)
        n_false = sum(bool(r["false"]) for r in rows)
        if s == "aa":
            print(f"  A/A:        {len(rows) - n_false}/{len(rows)} trials without a false alarm")
        else:
            print(f"  {s:<10}  detected {sum(r['hit'] for r in rows)}/{len(rows)}; "
                  f"trials with a false alarm elsewhere: {n_false}; planted ratios "
                  + ", ".join(f"{r['ratio']:.3f}" for r in rows if r["ratio"]))
        print(f"              gate wall time median {walls[len(walls) // 2]:.0f} s (min {walls[0]:.0f}, "
              f"max {walls[-1]:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
