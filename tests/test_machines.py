"""Several machines and environments in one results folder: what a run skips, what it says
when it records nothing, the results branch shared by runners, and the page that shows
the machines side by side."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from linear_impls import asvrun, report

from .conftest import ROOT, ResultsRemote, run_linbench

COLS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a", "stats_ci_99_b",
        "stats_q_25", "stats_q_75", "stats_number", "stats_repeat", "samples", "profile"]
CASE = "bench_linear.Inference.time_forward"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def two_env_checkout(tmp_path: Path, n_commits: int = 3) -> tuple[Path, list[str]]:
    """A git repository holding the project's asv.conf.json with a two-entry thread matrix."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    text = (ROOT / "asv.conf.json").read_text().replace('"LINBENCH_THREADS": ["2"]', '"LINBENCH_THREADS": ["1", "2"]')
    assert '["1", "2"]' in text
    (repo / "asv.conf.json").write_text(text)
    commits = []
    for i in range(n_commits):
        (repo / "f.txt").write_text(str(i))
        git(repo, "add", "-A")
        git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", f"c{i}")
        commits.append(git(repo, "rev-parse", "HEAD"))
    return repo, commits


def record(results_dir: Path, machine: str, env: str, commit: str, impls: dict[str, float | None],
           started_at: int = 1) -> Path:
    """A results file of one benchmark with one param axis (impl), as asv writes it."""
    folder = results_dir / machine
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "machine.json").write_text(json.dumps({"machine": machine, "version": 1}))
    row = [list(impls.values()), [[repr(i) for i in impls]], "v", started_at, 1.0,
           *[[None] * len(impls)] * 6, None, None]
    data = {"commit_hash": commit, "env_name": env, "date": 1, "params": {"machine": machine}, "python": "3.11",
            "requirements": {}, "env_vars": {}, "result_columns": COLS, "results": {CASE: row}, "version": 2}
    path = folder / f"{commit[:8]}-{env}.json"
    path.write_text(json.dumps(data))
    return path


def test_environments_are_resolved_by_asv(tmp_path):
    repo, _ = two_env_checkout(tmp_path)
    names = asvrun.environment_names(repo, ["--machine", "x"])
    assert len(names) == 2 and names[0].endswith("LINBENCH_THREADS1") and names[1].endswith("LINBENCH_THREADS2")
    assert all(n.startswith("virtualenv-py") for n in names)
    same = asvrun.environment_names(repo, ["--python=same"])
    assert len(same) == 2 and all(n.startswith("existing-py") for n in same)  # the matrix applies there too
    with pytest.raises(ValueError, match="no environment to run"):
        asvrun.environment_names(repo, ["-E", "no-such-tool:3.11"])


def test_resume_and_new_are_keyed_by_machine_and_environment(tmp_path):
    repo, commits = two_env_checkout(tmp_path)
    env1, env2 = asvrun.environment_names(repo, [])
    res = repo / ".asv" / "results"
    # Machine a: commit 1 fully, in both environments.  Machine b: commit 1 in one environment
    # only, and a case of it that a lacks.
    record(res, "a", env1, commits[1], {"f_linear": 1e-5, "nn_linear": None})
    record(res, "a", env2, commits[1], {"f_linear": 2e-5, "nn_linear": 3e-5})
    record(res, "b", env1, commits[1], {"f_linear": 1e-5, "mul_sum": 9e-5})
    a, b = asvrun.Target("a", (env1, env2)), asvrun.Target("b", (env1, env2))

    name = f"{CASE}('{{}}')".format
    assert asvrun.existing_cases(res, commits[1], a) == {name("f_linear"), name("nn_linear")}
    # b's second environment has nothing: a resumed run on b must measure every case.
    assert asvrun.existing_cases(res, commits[1], b) == set()
    assert asvrun.existing_cases(res, commits[1], asvrun.Target("b", (env1,))) == {name("f_linear"), name("mul_sum")}
    assert asvrun.existing_cases(res, commits[1], asvrun.Target("c", (env1, env2))) == set()

    assert asvrun.recorded_commits(res, a) == {commits[1]}
    assert asvrun.recorded_commits(res, b) == set()
    assert asvrun.new_commits(repo, res, 10, a) == commits[2:]
    assert asvrun.new_commits(repo, res, 10, b) == commits[2:]  # nothing complete on b: HEAD alone
    assert asvrun.new_commits(repo, res, 10, asvrun.Target("b", (env1,))) == commits[2:]
    record(res, "b", env1, commits[2], {"f_linear": 1e-5})
    assert asvrun.new_commits(repo, res, 10, asvrun.Target("b", (env1,))) == []
    assert asvrun.new_commits(repo, res, 10, b) == [commits[2]]  # its env2 still lacks HEAD
    assert asvrun.new_commits(repo, res, 10, a) == commits[2:]  # b's results never count for a


def test_a_run_with_nothing_new_to_record_exits_3(tmp_path):
    repo, commits = two_env_checkout(tmp_path, n_commits=2)
    res = repo / ".asv" / "results"
    for env in asvrun.environment_names(repo, []):
        record(res, "ci-a", env, commits[-1], {"f_linear": 1e-5})
    proc = run_linbench("run", "--root", str(repo), "--new", "--", "--machine", "ci-a")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "nothing new" in lines[0] and "'ci-a'" in lines[0] and "THREADS1" in lines[0]
    assert "Traceback" not in proc.stderr
    # Another machine name has nothing recorded: its run would measure HEAD (not run here).
    bad = run_linbench("run", "--root", str(repo), "--new", "--", "-E", "no-such-tool:3.11")
    assert bad.returncode == 2 and "no environment to run" in bad.stderr and "Traceback" not in bad.stderr


def test_snapshot_tells_a_new_measurement_from_an_old_one(tmp_path):
    res = tmp_path / "results"
    path = record(res, "m", "env", "c" * 40, {"f_linear": 1e-5, "nn_linear": None}, started_at=100)
    target = asvrun.Target("m", ("env",))
    before = asvrun.snapshot(res, ["c" * 40], target)
    assert len(before) == 2  # the failure counts as recorded
    assert asvrun.newly_recorded(before, asvrun.snapshot(res, ["c" * 40], target)) == 0
    record(res, "m", "env", "c" * 40, {"f_linear": 1e-5, "nn_linear": None}, started_at=200)  # run again
    assert asvrun.newly_recorded(before, asvrun.snapshot(res, ["c" * 40], target)) == 2
    before = asvrun.snapshot(res, ["c" * 40], target)
    data = json.loads(path.read_text())
    data["results"]["bench_linear.Environment.track_threads"] = [[2], [], "v", 300, 1.0, *[None] * 8]
    path.write_text(json.dumps(data))
    # The bookkeeping benchmark, recorded by every run, is not a measurement of anything asked for.
    assert asvrun.newly_recorded(before, asvrun.snapshot(res, ["c" * 40], target)) == 0


def test_concurrent_pushes_to_the_results_branch_lose_nothing(tmp_path):
    remote = ResultsRemote(tmp_path)
    clone, run, script = remote.clone, remote.run, ResultsRemote.SCRIPT

    seed = clone("seed")
    run(seed, "pull")
    record(seed / ".asv" / "results", "ci-a", "env", "1" * 40, {"f_linear": 1.0})
    assert run(seed, "push").returncode == 0
    runners = {name: clone(name) for name in ("ci-a", "ci-b", "ci-c")}
    for repo in runners.values():
        assert "files from" in run(repo, "pull").stdout
    # Each runner records its own machine's results (ci-a a new commit beside the seed's),
    # and all push at once.
    for name, repo in runners.items():
        record(repo / ".asv" / "results", name, "env", "2" * 40, {"f_linear": 2.0})
    procs = [subprocess.Popen(["sh", str(script), "push"], cwd=repo, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for repo in runners.values()]
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert any("rejected" in out for out in outputs), outputs  # they did collide, and merged
    check = clone("check")
    run(check, "pull")
    folder = check / ".asv" / "results"
    got = sorted(str(p.relative_to(folder)) for p in folder.rglob("*-env.json"))
    assert got == ["ci-a/11111111-env.json", "ci-a/22222222-env.json", "ci-b/22222222-env.json",
                   "ci-c/22222222-env.json"]
    # A runner's stale copy of a file another runner changed since its pull is not pushed back.
    late = runners["ci-b"]
    record(check / ".asv" / "results", "ci-a", "env", "1" * 40, {"f_linear": 1.5})
    assert run(check, "push").returncode == 0
    record(late / ".asv" / "results", "ci-b", "env", "3" * 40, {"f_linear": 3.0})
    assert run(late, "push").returncode == 0
    final = clone("final")
    run(final, "pull")
    seeded = json.loads((final / ".asv" / "results" / "ci-a" / "11111111-env.json").read_text())
    assert seeded["results"][CASE][0] == [1.5]
    assert (final / ".asv" / "results" / "ci-b" / "33333333-env.json").is_file()


def test_page_shows_the_machines_side_by_side(tmp_path, asv_results_dir):
    results = tmp_path / "results"
    shutil.copytree(asv_results_dir, results)
    machine_dir = next(p for p in results.iterdir() if p.is_dir())
    twin = results / "gpu-box"
    shutil.copytree(machine_dir, twin)
    (twin / "machine.json").write_text(json.dumps({"machine": "gpu-box", "cpu": "other", "version": 1}))
    out = tmp_path / "index.html"
    report.build_report(results, out)
    page = out.read_text()
    assert "Machines and environments side by side" in page
    side = page.split('id="machines"')[1].split("<h2")[0]
    assert side.count(f"<th>{machine_dir.name}<br>") >= 1 and side.count("<th>gpu-box<br>") >= 1
    assert "<th>f_linear</th>" in side and "3x2x3" in side
    # One machine alone: no such section.
    shutil.rmtree(twin)
    report.build_report(results, out)
    assert 'id="machines"' not in out.read_text()


def test_run_help_states_the_exit_statuses():
    proc = subprocess.run([sys.executable, "-m", "linear_impls", "run", "--help"], capture_output=True, text=True,
                          cwd=ROOT)
    assert "3 nothing new recorded" in " ".join(proc.stdout.split())


def test_a_resumed_run_counts_only_the_instructions_not_recorded():
    import linear_impls
    from linear_impls import instructions, sweep

    impls = [linear_impls.get(n) for n in ("f_linear", "nn_linear")]
    cases, _ = instructions.select_cases(sweep.SWEEPS["quick"], impls)
    recorded = {instructions.asv_name(c) for c in cases[:-2]} | {"bench_linear.Inference.time_forward('x')"}
    left, _ = instructions.select_cases(sweep.SWEEPS["quick"], impls, asvrun.uncounted_select(recorded))
    assert left == cases[-2:]
    assert asvrun.uncounted_select({"bench_linear.Inference.time_forward('x')"}) is None
