"""Two CI runners sharing one results branch: does either lose the other's results?

A scratch CI on this machine, as `.github/workflows/benchmarks.yml` runs its history
job on two runners: a bare repository stands for the remote, and two clones of HEAD
for the runners, each with its own asv machine name.  Each runner, at the same time,
runs what the workflow runs:

    make results-pull; make history MACHINE=<its name> SWEEP=quick NEW=<commits>

and, once both are done, both run ``make results-push`` at the same moment, so their
pushes overlap.  Then a third clone pulls the branch and checks that it holds both
machines' results for every commit benchmarked, and builds the summary page from it:
its side-by-side section must show both machines for the same cases.

Prints what each step printed and a verdict; exit 0 when everything holds.  The runners
share this checkout's virtualenv (not their own 2-minute install each); asv still builds
its own environment in each, as on a fresh runner.

    .venv/bin/python benchmarks/two_runners.py [--commits 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNERS = ("ci-runner-a", "ci-runner-b")


def sh(cmd: list[str], cwd: Path, env: dict | None = None, log: Path | None = None) -> int:
    if log is None:
        return subprocess.run(cmd, cwd=cwd, env=env).returncode
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode


def main() -> int:
    # Here, not at the top: asv imports every module of this folder in its environments, which lack asv.
    from linear_impls import results as read_results

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=2, help="newest commits each runner benchmarks (NEW=)")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="linbench-runners-"))
    work.mkdir(parents=True, exist_ok=True)
    remote = work / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    venv = Path(sys.executable).parent.parent
    env = dict(os.environ, REMOTE=str(remote), MAKEFLAGS="")
    t0 = time.perf_counter()
    clones = {}
    for name in RUNNERS:
        clone = work / name
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        # The shared virtualenv is up to date for these files (make would reinstall it from the clone).
        past = (venv / ".installed").stat().st_mtime - 60 if (venv / ".installed").exists() else 0
        for f in ("pyproject.toml", "Makefile"):
            os.utime(clone / f, (past, past))
        clones[name] = clone

    def runner(name: str, clone: Path, codes: dict) -> None:
        log = work / f"{name}.log"
        # A home of its own, as on a separate runner: asv keeps its machine file there.
        home = work / f"{name}-home"
        home.mkdir(exist_ok=True)
        mine = dict(env, HOME=str(home))
        codes[name] = [
            sh(["make", "results-pull", f"VENV={venv}"], clone, mine, log),
            sh(["make", "history", f"VENV={venv}", f"MACHINE={name}", "SWEEP=quick", f"NEW={args.commits}"],
               clone, mine, log),
        ]

    codes: dict[str, list[int]] = {}
    threads = [threading.Thread(target=runner, args=(n, c, codes)) for n, c in clones.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"two_runners: both histories done in {time.perf_counter() - t0:.0f} s; exit statuses {codes}")
    # Both push at once.
    pushes = [subprocess.Popen(["make", "-s", "results-push", f"VENV={venv}"], cwd=c, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for c in clones.values()]
    push_out = [p.communicate()[0].strip() for p in pushes]
    for name, out, p in zip(clones, push_out, pushes, strict=True):
        print(f"two_runners: {name} results-push (exit {p.returncode}):\n  " + out.replace("\n", "\n  "))

    check = work / "check"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(check)], check=True)
    subprocess.run(["sh", ".ci/results-branch", "pull"], cwd=check, env=env, check=True)
    results = check / ".asv" / "results"
    benchmarked = subprocess.run(["git", "rev-list", f"-{args.commits}", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout.split()
    ok = all(c == [0, 0] for c in codes.values()) and all(p.returncode == 0 for p in pushes)
    for name in RUNNERS:
        have = {res.commit_hash[:8] for res in read_results.iter_files(results, machine=name)}
        lacking = [c[:8] for c in benchmarked if c[:8] not in have]
        print(f"two_runners: {name}: results for {len(have)} commits on the branch"
              + (f"; LACKS {', '.join(lacking)}" if lacking else "; every benchmarked commit"))
        ok &= not lacking
    out = work / "index.html"
    proc = subprocess.run([sys.executable, "-m", "linear_impls", "report", "--results", str(results),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    page = out.read_text() if out.is_file() else ""
    side = page.split('id="machines"')[1].split("<h2")[0] if 'id="machines"' in page else ""
    both = all(f"<th>{name}<br>" in side for name in RUNNERS)
    n_rows = side.count("<tr><td>")
    print(f"two_runners: summary page (exit {proc.returncode}): side-by-side section "
          f"{'with both machines' if both else 'MISSING a machine'}, {n_rows} cases compared")
    ok &= proc.returncode == 0 and both and n_rows > 0
    print(f"two_runners: {'PASS' if ok else 'FAIL'} in {time.perf_counter() - t0:.0f} s (logs in {work})")
    if not args.keep and ok:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
