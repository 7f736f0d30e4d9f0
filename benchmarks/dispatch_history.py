"""Does the history label a change of dispatch, and nothing else?

Builds a scratch history: a clone of HEAD plus three commits of a plugin
(``linbench_plugins/dispatch_trial.py``): the first computes F.linear, the second adds
``x = x.clone()`` before it, the third changes a comment.  Then, as a user would: plain
``asv run FIRST^..LAST`` of the op traces (the catalogue's kind ``ops``) on a few
implementations of the quick sweep, and the summary page built from that history.  The
page's data (``reports/index.json``'s ``dispatch_changes``) must list exactly one change,
the plugin's, at the second commit, with ``aten.clone.default`` added, and nothing for
any other case.  Prints what it found, the cost of the traces, and a verdict line; exit 0
when it holds.

    .venv/bin/python benchmarks/dispatch_history.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asv_tools import scratch_clone  # noqa: E402

PLUGIN = "linbench_plugins/dispatch_trial.py"
SOURCE = '''"""F.linear, for benchmarks/dispatch_history.py."""
import torch.nn.functional as F

import linear_impls


@linear_impls.register_forward(description="F.linear, for the dispatch trial")
def dispatch_trial(x, weight, bias):
    return F.linear(x, weight, bias)
'''
CLONED = SOURCE.replace("    return F.linear(", "    x = x.clone()\n    return F.linear(")
COMMENTED = CLONED + "# a comment, nothing else\n"
IMPLS = ("dispatch_trial", "f_linear", "nn_linear", "mul_sum", "bmm")
SHAPE, MODE = "64x256x256", "forward"


def git(repo: Path, *args: str, when: int | None = None) -> str:
    env = dict(os.environ)
    if when is not None:  # commits a minute apart, as real ones are
        env.update(GIT_AUTHOR_DATE=f"{when} +0000", GIT_COMMITTER_DATE=f"{when} +0000")
    return subprocess.run(["git", "-c", "user.name=trial", "-c", "user.email=trial@invalid", *args], cwd=repo,
                          check=True, capture_output=True, text=True, env=env).stdout.strip()


def build_history(repo: Path) -> list[str]:
    commits = []
    for i, (text, message) in enumerate(((SOURCE, "a plugin computing F.linear"),
                                         (CLONED, "the plugin clones its input first"),
                                         (COMMENTED, "a comment"))):
        (repo / PLUGIN).write_text(text)
        git(repo, "add", PLUGIN)
        git(repo, "commit", "-q", "-m", message, when=1_790_000_000 + 60 * i)
        commits.append(git(repo, "rev-parse", "HEAD"))
    return commits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="keep the scratch clone here")
    args = ap.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="dispatch-history-"))
    repo = scratch_clone(work / "repo")
    commits = build_history(repo)
    asv = str(Path(sys.executable).parent / "asv")
    impls = "|".join(IMPLS)
    pattern = rf"^bench_linear\.Dispatch\.\w+\('(?:{impls})', '{SHAPE}', 'float32', 'cpu', '{MODE}'\)$"
    env = dict(os.environ, LINBENCH_SWEEP="quick", LINBENCH_SELECT=pattern,
               LINEAR_IMPLS_PLUGINS="linbench_plugins.dispatch_trial",
               LINBENCH_DISPATCH_DIR=str(repo / ".asv" / "results" / "trial" / "dispatch"))
    subprocess.run([asv, "machine", "--yes", "--machine", "trial"], cwd=repo, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    t0 = time.perf_counter()
    with open(work / "asv-run.log", "w") as log:
        code = subprocess.run([asv, "run", f"{commits[0]}^..{commits[-1]}", "--machine", "trial", "-b", pattern,
                               "--show-stderr"], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    run_s = time.perf_counter() - t0
    print(f"dispatch_history: asv run of {len(commits)} commits took {run_s:.0f} s (exit {code}); "
          f"log: {work / 'asv-run.log'}")

    from linear_impls import report

    out = work / "reports" / "index.html"
    report.build_report(repo / ".asv" / "results", out, asv_conf=repo / "asv.conf.json")
    changes = json.loads(out.with_suffix(".json").read_text())["dispatch_changes"]
    print(f"index.json: {len(changes)} dispatch change(s)")
    for c in changes:
        print(f"  {c['impl']} {c['shape']} {c['dtype']} {c['device']} {c['mode']} at {c['commit'][:8]} "
              f"(after {c['previous_commit'][:8]}): added {', '.join(c['added']) or '-'}; "
              f"removed {', '.join(c['removed']) or '-'}")
    page = out.read_text()
    ok = (len(changes) == 1 and changes[0]["impl"] == "dispatch_trial" and changes[0]["commit"] == commits[1]
          and changes[0]["previous_commit"] == commits[0] and "aten.clone.default" in changes[0]["added"]
          and "Dispatch changed between commits" in page)
    print(f"commits: {', '.join(c[:8] for c in commits)}; page: {out}")
    print("verdict: " + ("PASS: exactly the plugin's clone, at the second commit" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
