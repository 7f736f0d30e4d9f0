"""``linbench gate`` and the CI plumbing around it: verdicts, usage errors, a real gate run.

The verdict logic is tested on asv results written the way asv writes them; the
end-to-end test runs the real gate (real asv, a virtualenv, two commits of a scratch
clone) on a plugin whose HEAD version breaks correctness, which must fail the gate
whatever the machine's speed.  How often the gate flags a timing change is measured
by ``benchmarks/gate_trials.py``, not here.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from linear_impls import asvrun, gate, sweep
from linear_impls import results as results_mod

from .conftest import ROOT, ResultsRemote, run_linbench


def results(cases: dict[tuple[str, str], tuple]) -> list[results_mod.RecordedCase]:
    """The cases of one results file: {(benchmark, impl): (value, samples)}, one param axis."""
    return [results_mod.RecordedCase(name, (repr(impl),), value, None, samples, None)
            for (name, impl), (value, samples) in cases.items()]


def noisy(center: float, n: int = 16, spread: float = 0.01, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


T = "bench_linear.Inference.time_forward"


def verdicts(base: dict, head: dict, factor: float = 1.10) -> dict[str, str]:
    return {c.params[0].strip("'"): c.verdict for c in gate.compare_results(results(base), results(head), factor)}


def test_slower_needs_both_the_factor_and_significance():
    base = {(T, "a"): (1.0, noisy(1.0, seed=1)), (T, "b"): (1.0, noisy(1.0, seed=2)),
            (T, "c"): (1.0, noisy(1.0, seed=3)), (T, "d"): (1.0, noisy(1.0, seed=4))}
    head = {
        (T, "a"): (1.25, noisy(1.25, seed=5)),  # 25% slower, clear: regression
        (T, "b"): (1.04, noisy(1.04, seed=6)),  # significant but under the factor
        # a 25% higher median from a few wild samples: not significant
        (T, "c"): (1.25, [0.5, 2.0, 0.6, 1.9, 0.7, 1.8, 1.25, 1.3, 0.9, 1.6, 0.8, 1.7]),
        (T, "d"): (0.8, noisy(0.8, seed=7)),  # faster
    }
    assert verdicts(base, head) == {"a": "slower", "b": "same", "c": "same", "d": "faster"}
    # The factor is the user's: at 1.03 the 4% change counts.
    assert verdicts(base, head, factor=1.03)["b"] == "slower"


def test_one_slow_process_does_not_make_a_regression():
    base = {(T, "one_bad"): (1.0, noisy(1.0, 8, seed=1) + noisy(1.0, 8, seed=2)),
            (T, "all_bad"): (1.0, noisy(1.0, 8, seed=3) + noisy(1.0, 8, seed=4))}
    head = {(T, "one_bad"): (1.25, noisy(1.0, 8, seed=5) + noisy(1.5, 8, seed=6)),  # round 2 alone is slow
            (T, "all_bad"): (1.25, noisy(1.25, 8, seed=7) + noisy(1.25, 8, seed=8))}
    changes = gate.compare_results(results(base), results(head), 1.1, rounds=2)
    got = {c.params[0].strip("'"): c.verdict for c in changes}
    assert got == {"one_bad": "same", "all_bad": "slower"}
    assert {c.params[0].strip("'"): round(c.ratio, 2) for c in changes} == {"one_bad": 1.25, "all_bad": 1.25}
    assert gate.round_medians([1, 2, 3], 2) is None  # uneven: rounds cannot be told apart


def test_state_changes_between_commits():
    nan = float("nan")
    base = {(T, "broke"): (1.0, noisy(1.0)), (T, "fixed"): (None, None), (T, "skipped"): (1.0, noisy(1.0)),
            (T, "both"): (None, None), (T, "gone"): (1.0, noisy(1.0)), (T, "na"): (nan, None),
            (T, "runs_now"): (nan, None)}
    head = {(T, "broke"): (None, None), (T, "fixed"): (1.0, noisy(1.0)), (T, "skipped"): (nan, None),
            (T, "both"): (None, None), (T, "na"): (nan, None), (T, "runs_now"): (None, None),
            (T, "added"): (1.0, noisy(1.0))}
    got = verdicts(base, head)
    assert got == {"broke": "broke", "fixed": "fixed", "skipped": "n/a at HEAD", "both": "failed at both",
                   "runs_now": "broke", "added": "new", "gone": "n/a at HEAD"}
    changes = gate.compare_results(results(base), results(head), 1.1)
    assert {c.params[0].strip("'") for c in changes if c.regressed} == {"broke", "runs_now"}


def test_a_track_that_moved_is_reported_not_a_regression():
    track = "bench_linear.Environment.track_threads"
    changes = gate.compare_results(results({(track, "x"): (2, [2])}), results({(track, "x"): (1, [1])}), 1.1)
    assert [c.verdict for c in changes] == ["changed"]
    assert not changes[0].regressed


def test_bench_regex_narrows_the_sweep_patterns():
    names = [f"{gate.RELATIVE}('{impl}', '1x8x8', 'float32', 'cpu', 'forward')"
             for impl in ("f_linear", "nn_linear", "bmm")]
    names.append(f"{gate.RELATIVE}('f_linear', '512x1024x1024', 'float32', 'cpu', 'forward')")
    names.append("bench_linear.Inference.time_forward('f_linear', '1x8x8', 'float32', 'cpu')")  # not the metric
    quick = sweep.SWEEPS["quick"]

    def selected(regex):
        pats = gate.bench_patterns(quick, regex)
        return [n for n in names if any(re.search(p, n) for p in pats)]

    assert selected(None) == names[:3]  # 512x1024x1024 is not a quick case
    assert selected("f_linear") == names[:1]
    assert selected("^bench_linear\\.Relative.*_linear") == names[:2]
    with pytest.raises(ValueError, match="not a regular expression"):
        gate.bench_patterns(quick, "(")


@pytest.mark.parametrize(("args", "message"), [
    (["no-such-ref"], "'no-such-ref' is not a commit"),
    (["HEAD", "HEAD", "--factor", "1"], "--factor must be above 1"),
    (["HEAD", "HEAD", "--rounds", "1"], "--rounds must be at least 2"),
    (["HEAD", "HEAD", "--bench", "("], "is not a regular expression"),
    (["HEAD", "HEAD", "--root", "/"], "no asv.conf.json"),
    (["HEAD", "HEAD", "--sweep", "huge"], "unknown sweep 'huge'"),
])
def test_gate_usage_errors_are_one_line_exit_2(args, message):
    proc = run_linbench("gate", *args, "--root", str(ROOT)) if "--root" not in args else run_linbench("gate", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# --- a real gate run ---------------------------------------------------------------------

PLUGIN = '''"""trial_linear: F.linear as a plugin versioned in the repository."""

import torch.nn.functional as F

import linear_impls


@linear_impls.register("trial_linear", description="F.linear from a plugin", expression="F.linear(x, W, b)")
def trial_linear(weight, bias):
    def forward(x):
        return F.linear(x, weight, {bias})

    return forward
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@invalid", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


def commit_file(repo: Path, path: str, text: str, message: str) -> str:
    (repo / path).write_text(text)
    git(repo, "add", path)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A clone of HEAD with two more commits: a correct plugin, then the same plugin dropping its bias."""
    repo = tmp_path_factory.mktemp("gate") / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    # asv builds a virtualenv with torch (a minute); reuse this checkout's when it has one.
    (repo / ".asv").mkdir()
    if (ROOT / ".asv" / "env").is_dir():
        (repo / ".asv" / "env").symlink_to(ROOT / ".asv" / "env")
    path = "linbench_plugins/gate_test.py"
    base = commit_file(repo, path, PLUGIN.format(bias="bias"), "trial_linear")
    head = commit_file(repo, path, PLUGIN.format(bias="None"), "trial_linear forgets its bias")
    return repo, base, head


def test_gate_fails_when_head_breaks_a_plugin(scratch, tmp_path):
    repo, base, head = scratch
    out = tmp_path / "gate.json"
    env = {"PIP_FIND_LINKS": "/opt/wheels"} if Path("/opt/wheels").is_dir() else {}
    proc = run_linbench("gate", base, head, "--root", str(repo), "--bench", "trial_linear", "--rounds", "2",
                        "--json", str(out), plugins="linbench_plugins.gate_test", env_extra=env, timeout=1200)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    # The checks at each commit name what broke, with the reason.
    assert "CORRECTNESS" in proc.stdout
    data = json.loads(out.read_text())
    broken = data["broken_checks"]
    assert broken and {b["impl"] for b in broken} == {"trial_linear"}
    assert any(b["case"] == "no_bias" or "bias" in b["case"] or b["reason"] for b in broken)
    # The plugin took part in asv at both commits: timed at BASE, failed (its check) at HEAD.
    verdict = {(c["params"][0], c["params"][1], c["params"][4]): c["verdict"] for c in data["changes"]
               if c["benchmark"] == gate.RELATIVE}
    quick = sweep.SWEEPS["quick"].shapes
    assert {verdict.get(("'trial_linear'", repr(s), repr(m))) for s in quick for m in sweep.MODES} == {"broke"}, \
        verdict
    assert "REGRESSED" in proc.stdout and "trial_linear" in proc.stdout
    log = (repo / ".asv" / "gate" / "asv.log").read_text()
    assert "check failed" in log or "CheckFailed" in log


# --- CI plumbing --------------------------------------------------------------------------


def test_new_commits_picks_what_has_no_results(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commits = [commit_file(repo, "f.txt", str(i), f"c{i}") for i in range(4)]
    res = tmp_path / "results"
    (res / "m").mkdir(parents=True)
    target = asvrun.Target("m", ("env",))
    assert asvrun.new_commits(repo, res, 10, target) == [commits[-1]]  # empty history: HEAD alone

    def record(commit):
        results_mod.write_file(res, {"machine": "m"}, commit, 0, "env", {})

    record(commits[1])
    (res / "m" / "machine.json").write_text(json.dumps({"machine": "m"}))
    assert asvrun.new_commits(repo, res, 10, target) == commits[2:]
    assert asvrun.new_commits(repo, res, 1, target) == commits[3:]
    record(commits[3])
    assert asvrun.new_commits(repo, res, 10, target) == []


def test_results_branch_round_trip(tmp_path):
    remote = ResultsRemote(tmp_path)
    clone, run = remote.clone, remote.run

    first = clone("first")
    assert "starting an empty history" in run(first, "pull").stdout
    (first / ".asv" / "results" / "m").mkdir(parents=True)
    (first / ".asv" / "results" / "m" / "abc-env.json").write_text('{"commit_hash": "abc"}')
    pushed = run(first, "push")
    assert pushed.returncode == 0 and "pushed" in pushed.stdout, pushed.stderr
    assert "nothing new" in run(first, "push").stdout
    assert git(first, "status", "--porcelain", "--untracked-files=no") == ""  # its own index untouched
    second = clone("second")
    assert "1 files" in run(second, "pull").stdout
    assert (second / ".asv" / "results" / "m" / "abc-env.json").read_text() == '{"commit_hash": "abc"}'
    (second / ".asv" / "results" / "m" / "def-env.json").write_text("{}")
    assert run(second, "push").returncode == 0
    assert "2 files" in run(first, "pull").stdout  # history accumulates
    assert run(first, "bogus").returncode == 2


def test_workflow_runs_only_makefile_targets():
    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "benchmarks.yml").read_text())
    on = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert set(on) == {"push", "pull_request"}
    runs = [step["run"] for job in flow["jobs"].values() for step in job["steps"] if "run" in step]
    targets = set()
    for run in runs:
        assert run.startswith("make ") and "\n" not in run.strip(), run
        targets.add(run.split()[1])
    assert {"history", "results-pull", "results-push", "gate"} <= targets
    env = dict(os.environ, MAKEFLAGS="")
    for run in runs:
        # A dry run: each target exists and expands (its commands are exercised by the tests above).
        words = run.replace("${{ github.base_ref }}", "main").replace("${{ matrix.machine }}", "ci").split()[1:]
        proc = subprocess.run(["make", "-n", "-C", str(ROOT), *words, "BASE=HEAD"], capture_output=True,
                              text=True, env=env)
        assert proc.returncode == 0, proc.stderr
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "gate", "BASE=abc123"], capture_output=True, text=True,
                         env=env).stdout
    assert "linbench gate abc123 HEAD --sweep quick" in dry
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "history", "MACHINE=ci"], capture_output=True,
                         text=True, env=env).stdout
    assert "--new 10 -- --machine ci" in dry and "asv publish" in dry
    # The CPU runner's history; the GPU runner's job of its own, under its own machine name; the
    # pages built after both, from both runners' checks.
    history, gpu, pages = flow["jobs"]["history"], flow["jobs"]["gpu"], flow["jobs"]["pages"]
    assert history["runs-on"] == "${{ matrix.runner }}"
    assert [i["machine"] for i in history["strategy"]["matrix"]["include"]] == ["linbench-ci"]
    assert "make history MACHINE=${{ matrix.machine }}" in [s.get("run") for s in history["steps"]]
    assert "vars.GPU_RUNNER" in gpu["if"] and gpu["runs-on"] == "${{ vars.GPU_RUNNER }}"
    gpu_runs = [s.get("run") for s in gpu["steps"] if "run" in s]
    # CUDA must be visible before anything else runs, and the sweep is CUDA's alone, pushed chunk by chunk.
    assert gpu_runs.index("make cuda-visible") < gpu_runs.index("make test-cuda") < gpu_runs.index(
        "make history MACHINE=linbench-ci-gpu DEVICE=cuda NEW=3 PUSH_EACH_CHUNK=1")
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "history", "MACHINE=linbench-ci-gpu", "DEVICE=cuda",
                          "PUSH_EACH_CHUNK=1"], capture_output=True, text=True, env=env).stdout
    assert "linbench check --device cuda" in dry and "--device cuda" in dry.split("linbench run")[1]
    assert "--after-chunk 'sh .ci/results-branch push'" in dry
    assert set(pages["needs"]) == {"history", "gpu"} and "make results-pull" in [s.get("run") for s in pages["steps"]]
    assert "make pages CHECKS=checks" in [s.get("run") for s in pages["steps"]]
    assert flow["jobs"]["deploy-pages"]["needs"] == "pages"
