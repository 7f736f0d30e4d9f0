"""Does the history show a real 5% step, and nothing else, on this shared machine?

Builds a scratch history: a clone of HEAD plus ``--commits`` commits that only edit a
comment in ``linear_impls/builtins.py``, one of which (``--plant-at``) also makes
``addmm`` do about 5% more work at 64x256x256 (two throw-away elementwise products of
its output: +4.96% instructions per call forward, +1.2% training, measured).  Which
forward to use is decided when the implementation is built, so other shapes run the
very same code.  Commits are a minute apart, as real ones are.  Then, as a user would:

1. plain ``asv run FIRST^..main`` on the quick sweep (``-b`` narrowed to a few
   implementations, to keep the trial to minutes), then ``asv publish``;
2. reads asv's ``regressions.json``: the planted step must be listed at its commit
   (in the instruction counts at least), and no other step in any metric;
3. builds the summary page from that history: its history section must list the
   planted change, with the functions that changed, and nothing between commits
   that differ by a comment.

Prints every step asv and the page found, and a verdict line; exit 0 when both hold.

    .venv/bin/python benchmarks/history_trial.py            # 9 commits, ~15 minutes here
    .venv/bin/python benchmarks/history_trial.py --keep /tmp/trial   # keep the scratch clone
    .venv/bin/python benchmarks/history_trial.py --reanalyse /tmp/trial   # judge it again, this asv.conf.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asv_tools import ROOT, scratch_clone  # noqa: E402

PLANTED_IMPL = "addmm"
PLANTED_SHAPE = "64x256x256"
IMPLS = ("addmm", "f_linear", "nn_linear")
# What the plant inserts before addmm's ``return forward``: at 256x256 only, a forward
# that does two extra elementwise products (chosen in the factory, which is never counted).
ANCHOR = "        return y.reshape(*x.shape[:-1], out_features)\n\n    return forward\n"
PLANT = ("        return y.reshape(*x.shape[:-1], out_features)\n\n"
         "    if (out_features, in_features) == (256, 256):  # planted: ~5% more work at one shape\n"
         "        plain = forward\n\n"
         "        def forward(x):  # noqa: F811\n"
         "            y = plain(x)\n"
         "            y * 1.0\n"
         "            y * 1.0\n"
         "            return y\n\n"
         "    return forward\n")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=trial", "-c", "user.email=trial@invalid", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


def build_history(repo: Path, n_commits: int, plant_at: int) -> list[str]:
    """``n_commits`` commits on top of the clone's HEAD; returns their hashes, oldest first."""
    path = repo / "linear_impls" / "builtins.py"
    commits = []
    for i in range(1, n_commits + 1):
        text = path.read_text()
        text += f"# history trial: comment-only change {i}\n"
        message = f"trial commit {i}: a comment"
        if i == plant_at:
            if ANCHOR not in text:
                raise SystemExit("history_trial: addmm's forward changed; update ANCHOR")
            text = text.replace(ANCHOR, PLANT)
            message = f"trial commit {i}: addmm does ~5% more work at {PLANTED_SHAPE}"
        path.write_text(text)
        when = f"{1_790_000_000 + 60 * i} +0000"
        subprocess.run(["git", "-c", "user.name=trial", "-c", "user.email=trial@invalid", "commit", "-q", "-am",
                        message], cwd=repo, check=True, env=dict(os.environ, GIT_AUTHOR_DATE=when,
                                                                  GIT_COMMITTER_DATE=when))
        commits.append(git(repo, "rev-parse", "HEAD"))
    return commits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=9, help="commits in the scratch history (default 9)")
    ap.add_argument("--plant-at", type=int, default=5, help="which of them plants the step (default 5)")
    ap.add_argument("--keep", metavar="DIR", help="build the scratch clone here and keep it")
    ap.add_argument("--reanalyse", metavar="DIR", help="no new run: publish and judge the history kept in DIR "
                                                       "(from --keep) under this checkout's asv.conf.json")
    args = ap.parse_args(argv)
    # Imported here, not at the top: asv imports every module under benchmarks/ in its
    # environments, which have torch but not the report's pandas.
    sys.path.insert(0, str(ROOT))
    from linear_impls import history, report
    if not 2 <= args.plant_at <= args.commits - 1:
        print("history_trial: --plant-at must leave a commit before and after it (asv needs two after a step)",
              file=sys.stderr)
        return 2
    asv = str(Path(sys.executable).parent / "asv")
    if args.reanalyse:
        work = Path(args.reanalyse)
        repo = work / "repo"
        commits = git(repo, "rev-list", "--reverse", f"main~{args.commits}..main").split()
        planted = next(c for c in commits if "more work" in git(repo, "log", "-1", "--format=%s", c))
        # The thresholds under judgement are this checkout's (the run's code is the scratch's).
        shutil.copy(ROOT / "asv.conf.json", repo / "asv.conf.json")
        return analyse(repo, work, commits, planted, asv, args, float("nan"), history, report)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="linbench-history-"))
    repo = scratch_clone(work / "repo", branch="main")
    commits = build_history(repo, args.commits, args.plant_at)
    planted = commits[args.plant_at - 1]
    # setup_cache counts every implementation the sweep has unless told otherwise.
    env = dict(os.environ, LINBENCH_SWEEP="quick", LINBENCH_INSTRUCTIONS_SELECT=f"'(?:{'|'.join(IMPLS)})'")
    alt = "|".join(IMPLS)
    t0 = time.perf_counter()
    subprocess.run([asv, "machine", "--yes", "--machine", "trial"], cwd=repo, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    cmd = [asv, "run", f"{commits[0]}^..main", "--machine", "trial", "--record-samples",
           "-b", rf"^bench_linear\.(Inference|Training|RelativeToTorch|Instructions)\.\w+\('(?:{alt})', "
                 r"'(?:3x2x3|1x8x8|1x64x64|64x256x256)', 'float32', 'cpu'"]
    print("history_trial:", " ".join(cmd), flush=True)
    with open(work / "asv-run.log", "w") as log:
        code = subprocess.run(cmd, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    run_s = time.perf_counter() - t0
    print(f"history_trial: asv run of {len(commits)} commits took {run_s:.0f} s (exit {code}); "
          f"log: {work / 'asv-run.log'}", flush=True)
    code = analyse(repo, work, commits, planted, asv, args, run_s, history, report)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return code


def analyse(repo: Path, work: Path, commits: list[str], planted: str, asv: str, args, run_s: float,
            history, report) -> int:
    """asv publish, then asv's regressions and the summary page's history, each judged; 0 when both pass."""
    subprocess.run([asv, "publish"], cwd=repo, check=True, stdout=subprocess.DEVNULL)
    html = repo / "reports" / "asv"
    regressions = json.loads((html / "regressions.json").read_text())["regressions"]
    # asv numbers commits; index.json maps the numbers back to hashes.
    rev_to_hash = {int(k): v for k, v in json.loads((html / "index.json").read_text())["revision_to_hash"].items()}

    short = {c: f"{i + 1}:{c[:8]}" for i, c in enumerate(commits)}
    ok = True
    found_planted = False
    print(f"\nasv regressions.json: {len(regressions)} entries")
    for name, _graph, _params, _idx, _last, _best, jumps in regressions:
        for _before_rev, after_rev, before, after in jumps:
            after_hash = rev_to_hash.get(after_rev, "")
            # Any metric of the planted case, at the planted commit, is the plant being found.
            planted_here = f"'{PLANTED_IMPL}', '{PLANTED_SHAPE}'" in name and after_hash == planted
            verdict = "planted" if planted_here else "UNEXPECTED"
            print(f"  {verdict:<10} {name}: step at {short.get(after_hash, after_hash[:8])}, "
                  f"{before:.4g} -> {after:.4g}")
            found_planted |= planted_here
            ok &= planted_here
    print(f"  planted step listed: {found_planted}")
    ok &= found_planted

    out = work / "report" / "index.html"
    summary = report.build_report(repo / ".asv" / "results", out, asv_conf=repo / "asv.conf.json")
    data = report.load_results(repo / ".asv" / "results")
    changes = history.find_changes(data.frame[data.frame["status"] != "skipped"], data.files,
                                   history.load_thresholds(repo / "asv.conf.json"))
    print(f"\nsummary page ({out}): {summary.n_changes} changes over {data.files['commit'].nunique()} commits")
    page_planted = False
    for _, c in changes.iterrows():
        is_planted = (c["impl"] == PLANTED_IMPL and c["shape"] == PLANTED_SHAPE and c["after_commit"] == planted)
        deltas = history.function_deltas(repo / ".asv" / "results", c) or []
        print(f"  {'planted' if is_planted else 'UNEXPECTED':<10} {c['kind']} {c['impl']} {c['shape']} {c['mode']}: "
              f"{short.get(c['before_commit'], c['before_commit'][:8])} -> "
              f"{short.get(c['after_commit'], c['after_commit'][:8])}, {c['before']:.4g} -> {c['after']:.4g} "
              f"({c['ratio']:.3f})")
        for d in deltas:
            print(f"             {d.change:+.0f}/call {d.function[:100]}")
        page_planted |= is_planted and c["kind"] == "instructions" and bool(deltas)
        ok &= is_planted
    history_html = out.read_text().split('id="history"')[1]
    print(f"  planted change listed with its functions: {page_planted}; in the page: {PLANTED_IMPL in history_html}")
    ok &= page_planted
    print(f"\nhistory_trial: {'PASS' if ok else 'FAIL'}: {len(commits)} commits, planted at {short[planted]}, "
          f"asv run {run_s:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
