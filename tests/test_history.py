"""The history on the summary page and in the gate: changes found over every commit, and why.

Synthetic asv results written the way asv writes them: six commits on which
implementation ``a`` runs 5% more instructions from the fourth on, while the ratio
wanders within its noise and wall time moves 40%, as it does on a shared runner.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pandas as pd
import pytest

from linear_impls import functioncounts, gate, history, report, results
from linear_impls.report.gate_text import format_result

COLS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a", "stats_ci_99_b", "stats_q_25",
        "stats_q_75", "stats_number", "stats_repeat", "samples", "profile"]
ENV = "virtualenv-py3.11-torch2.13.0"
IMPLS = ("a", "b")
SHAPE = "64x256x256"
N = 6
STEP_AT = 3  # index of the first commit with the extra work
COMMITS = [f"{i:x}" * 40 for i in range(1, N + 1)]
THRESHOLDS = history.load_thresholds(Path(__file__).resolve().parent.parent / "asv.conf.json")


def entry(params: list[list[str]], values: list[float]) -> list:
    row = dict.fromkeys(COLS)
    row.update(result=values, params=params, version="v", started_at=0, duration=1.0)
    return [row[c] for c in COLS]


def write_history(root: Path, machine: str = "vm", step: bool = True, seed: int = 0) -> Path:
    rng = random.Random(seed)
    results = root / "results"
    (results / machine).mkdir(parents=True, exist_ok=True)
    (results / machine / "machine.json").write_text(json.dumps({"machine": machine, "cpu": "test CPU"}))
    impls = [repr(i) for i in IMPLS]
    five = [impls, [repr(SHAPE)], ["'float32'"], ["'cpu'"], ["'forward'"]]
    four = [impls, [repr(SHAPE)], ["'float32'"], ["'cpu'"]]
    for i, commit in enumerate(COMMITS):
        extra = 1.05 if step and i >= STEP_AT else 1.0
        counts = [1_000_000 * extra * (1 + rng.uniform(-0.001, 0.001)), 2_000_000 * (1 + rng.uniform(-0.001, 0.001))]
        ratios = [1.2 * (1 + rng.uniform(-0.08, 0.08)), 0.9 * (1 + rng.uniform(-0.08, 0.08))]
        times = [1e-4 * (1 + rng.uniform(-0.4, 0.4)) for _ in IMPLS]
        data = {"commit_hash": commit, "env_name": ENV, "date": 1_700_000_000_000 + i * 3_600_000,
                "params": {"python": "3.11", "torch": "2.13.0", "machine": machine}, "requirements": {},
                "python": "3.11", "version": 2,
                "result_columns": COLS, "results": {
                    "bench_linear.Instructions.track_instructions": entry(five, counts),
                    "bench_linear.RelativeToTorch.track_ratio": entry(five, ratios),
                    "bench_linear.Inference.time_forward": entry(four, times)}}
        (results / machine / f"{commit[:8]}-{ENV}.json").write_text(json.dumps(data))
        per_function = {f"{impl} {SHAPE} float32 forward": {
            "instructions": counts[j], "calls": 1,
            "functions": {"mkl_blas_avx2_sgemm_kernel_0": counts[j] * 0.9 - (50_000 if impl == "a" and extra > 1
                                                                                else 0),
                          "at::native::extra_rows(at::Tensor const&)": 50_000 if impl == "a" and extra > 1 else 0,
                          "_PyEval_EvalFrameDefault": counts[j] * 0.1}}
            for j, impl in enumerate(IMPLS)}
        per_function = {k: dict(v, functions={f: c for f, c in v["functions"].items() if c})
                        for k, v in per_function.items()}
        functioncounts.save(functioncounts.sidecar_dir(results / machine), commit, ENV, per_function,
                            {"cpu": "test CPU"})
    return results


def test_a_step_in_the_instructions_is_the_only_change(tmp_path):
    results = write_history(tmp_path)
    data = report.load_results(results)
    assert set(data.frame["kind"]) == {"instructions", "ratio", "time"}
    changes = history.find_changes(data.frame, data.files, THRESHOLDS)
    assert len(changes) == 1, changes
    c = changes.iloc[0]
    assert (c["kind"], c["impl"], c["before_commit"], c["after_commit"]) == \
        ("instructions", "a", COMMITS[STEP_AT - 1], COMMITS[STEP_AT])
    assert c["ratio"] == pytest.approx(1.05, abs=0.005)
    deltas = history.function_deltas(results, c)
    assert deltas[0].function == "at::native::extra_rows(at::Tensor const&)" and deltas[0].change == 50_000


def test_wall_time_alone_never_decides(tmp_path):
    results = write_history(tmp_path, step=False)
    data = report.load_results(results)
    frame = data.frame.copy()
    # A 3x jump in wall time from the third commit on: drawn, but not a change.
    later = (frame["kind"] == "time") & frame["commit"].isin(COMMITS[2:])
    frame.loc[later, "value"] *= 3
    assert history.find_changes(frame, data.files, THRESHOLDS).empty


def test_thresholds_follow_asv_conf(tmp_path):
    assert history.threshold_for("bench_linear.Instructions.track_instructions", THRESHOLDS) == 0.02
    assert history.threshold_for("bench_linear.RelativeToTorch.track_ratio", THRESHOLDS) == 0.2
    assert history.threshold_for("bench_linear.Other.track_x", THRESHOLDS) == history.ASV_DEFAULT_THRESHOLD
    conf = tmp_path / "asv.conf.json"
    conf.write_text('{\n  // a comment, as asv allows\n  "regressions_thresholds": {"x": "0.5", "y": "bad"}\n}')
    assert history.load_thresholds(conf) == {"x": 0.5}
    assert history.load_thresholds(tmp_path / "missing.json") == {}


def test_page_lists_the_change_with_its_functions_and_a_chart(tmp_path):
    results = write_history(tmp_path)
    write_history(tmp_path, machine="quiet", step=False, seed=1)
    conf = Path(__file__).resolve().parent.parent / "asv.conf.json"
    out = tmp_path / "index.html"
    summary = report.build_report(results, out, asv_conf=conf)
    assert summary.n_changes == 1
    page = out.read_text()
    hist = page.split('id="history"')[1].split('<h2 id="env"')[0]
    vm = hist.split(">vm — ")[1]
    quiet = hist.split(">quiet — ")[1].split(">vm — ")[0]
    assert "No change in any case over the whole history" in quiet
    assert "1 change." in vm and "<th>a</th>" in vm and "<th>b</th>" not in vm
    assert f"{COMMITS[STEP_AT - 1][:8]}</code> → <code>{COMMITS[STEP_AT][:8]}" in vm
    assert "+50,000</code> at::native::extra_rows" in vm
    assert vm.count("<svg") == 1
    # Each metric says what it measures and what it cannot see.
    for m in history.metrics():
        assert m.label in hist
    assert "AVX-512" in hist and "2%" in hist and "20%" in hist


def test_gate_counts_judged_by_factor_with_functions(tmp_path):
    name = gate.INSTRUCTIONS
    params = [["'a'", "'b'", "'c'"], ["'64x256x256'"], ["'float32'"], ["'cpu'"], ["'forward'"]]

    def res(values, commit):
        return [results.RecordedCase(name, combo, v, None, None, None)
                for combo, v in zip(itertools.product(*params), values, strict=True)]

    base, head = res([1e6, 1e6, 1e6], "1" * 40), res([1.015e6, 1.05e6, 0.9e6], "2" * 40)
    changes = gate.compare_results(base, head, 1.10)
    assert [c.verdict for c in changes] == ["same", "slower", "faster"]
    assert changes[1].regressed and changes[1].unit == "instructions"
    assert [c.verdict for c in gate.compare_results(base, head, 1.10, instructions_factor=1.01)][0] == "slower"
    folder = tmp_path / "callgrind"
    for commit, extra in (("1" * 40, 0), ("2" * 40, 50_000)):
        functioncounts.save(folder, commit, ENV, {"b 64x256x256 float32 forward": {
            "instructions": 1e6 + extra, "calls": 1,
            "functions": {"sgemm": 1e6, **({"extra_rows": extra} if extra else {})}}}, {})
    gate.attach_function_deltas(changes, folder, "1" * 40, "2" * 40)
    assert changes[1].functions == ["+50000 instructions/call in extra_rows (0 -> 50000)"]
    assert changes[2].functions == ["(no per-function counts kept for this case)"]
    result = gate.GateResult("1" * 40, "2" * 40, changes, [], 1.10, 3, 1.0)
    text = format_result(result)
    assert "1 cases with over 1.02x the instructions" in text and "extra_rows" in text


def test_ordered_commits_by_date():
    files = pd.DataFrame({"file": [0, 1, 2], "machine": ["m"] * 3, "env": ["e"] * 3, "commit": ["c", "a", "b"],
                          "date": [3.0, 1.0, 2.0]})
    assert history.ordered_commits(files)["commit"].to_list() == ["a", "b", "c"]
