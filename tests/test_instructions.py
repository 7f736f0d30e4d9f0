"""Instruction counts under callgrind (linear_impls/instructions.py): real valgrind on tiny cases.

These run valgrind for real (about 20 s to import torch under it, a few seconds a
case), so they are few and small: what is counted, that two processes agree, that
our reading of callgrind's dumps agrees with callgrind_annotate, and that a faulty
implementation costs its own cases only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from linear_impls import callgrind, functioncounts, instructions, supervise, sweep
from linear_impls.instructions import CountedCase

from .conftest import PLUGIN_DIR, ROOT

needs_valgrind = pytest.mark.skipif(instructions.unavailable_reason() is not None,
                                    reason=str(instructions.unavailable_reason()))

TINY = [CountedCase("f_linear", "1x8x8", "float32", "forward"),
        CountedCase("nn_linear", "3x2x3", "float32", "forward_backward")]


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """The two tiny cases counted twice, in two valgrind processes: (workdir, first, second)."""
    if instructions.unavailable_reason():
        pytest.skip(instructions.unavailable_reason())
    work = tmp_path_factory.mktemp("callgrind")
    first = instructions.measure(TINY, "quick", workdir=work / "a")
    second = instructions.measure(TINY, "quick", workdir=work / "b")
    return work, first, second


@pytest.mark.slow
@needs_valgrind
def test_counts_are_per_call_and_agree_between_processes(counted):
    _work, first, second = counted
    for case in TINY:
        a, b = first[case.key], second[case.key]
        assert "error" not in a, a
        assert a["calls"] == instructions.calls_for(case) >= 5  # tiny: many calls, their mean
        # A tiny forward is tens of thousands of instructions; a training step several times that.
        assert 5_000 < a["instructions"] < 5_000_000, a["instructions"]
        assert abs(b["instructions"] / a["instructions"] - 1) < 0.01, (a["instructions"], b["instructions"])
        # The per-function counts add up to the total (nothing double-counted, nothing lost).
        assert sum(a["functions"].values()) == pytest.approx(a["instructions"], rel=1e-9)
    fwd, train = (first[c.key]["instructions"] for c in TINY)
    assert train > 2 * fwd  # a backward is real work


@pytest.mark.slow
@needs_valgrind
def test_dump_reading_agrees_with_callgrind_annotate(counted):
    work, _first, _second = counted
    dumps = sorted((work / "a" / "run1").glob("callgrind.out.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]))
    dump = next(p for p in dumps if callgrind.parse_dump(p)[0] == TINY[0].key)
    desc, total, functions = callgrind.parse_dump(dump)
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(dump)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"^\s*([\d,]+)\s.*PROGRAM TOTALS", out, re.M)
    assert m and int(m.group(1).replace(",", "")) == total
    # callgrind_annotate's top function lines: "count (pct%)  file:function [object]" or "count  file:function".
    # The object in the last brackets is dropped; a name may hold brackets of its own ("[clone .constprop.0]").
    rows = re.findall(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?\S*?:(\S.*?)(?: \[[^\]]*\])?$",
                      out.split("PROGRAM TOTALS")[1], re.M)
    assert rows, out[:2000]
    # callgrind_annotate splits a function's cost by the source file of inlined code
    # (fi=/fe=); we count per function: sum its rows by name.
    per_name: dict[str, int] = {}
    for count, name in rows:
        per_name[name.strip()] = per_name.get(name.strip(), 0) + int(count.replace(",", ""))
    assert sum(per_name.values()) == total
    top = sorted(per_name.items(), key=lambda kv: -kv[1])[:10]
    assert [functions.get(name) for name, _ in top] == [count for _, count in top]


@pytest.mark.slow
@needs_valgrind
def test_a_faulty_implementation_costs_only_its_own_case(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGIN_DIR), str(ROOT)]),
               LINEAR_IMPLS_PLUGINS="check_faulty_plugin")
    cases = [CountedCase("bad_raises", "3x2x3", "float32", "forward"),
             CountedCase("bad_segfault", "3x2x3", "float32", "forward"),
             CountedCase("f_linear", "3x2x3", "float32", "forward")]
    got = instructions.measure(cases, "quick", env=env, workdir=tmp_path)
    assert "kernel not implemented" in got[cases[0].key]["error"]
    assert "SIGSEGV" in got[cases[1].key]["error"] and "died" in got[cases[1].key]["error"]
    assert got[cases[2].key]["instructions"] > 1000  # measured by a fresh process after the crash
    assert (tmp_path / "run2").is_dir()


def test_a_hung_case_is_killed_after_its_timeout(tmp_path):
    progress = tmp_path / "progress.jsonl"
    progress.write_text('{"start": "slow case", "t": 0}\n')
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    t0 = time.monotonic()
    events, hung = supervise.follow(proc, progress, 1.0, 1, lambda _line: None, "instructions")
    assert hung and time.monotonic() - t0 < 20
    assert events == [{"start": "slow case", "t": 0}]
    assert proc.returncode is not None


def test_client_requests_do_nothing_natively():
    requests = callgrind.ClientRequests()
    assert not requests.running_on_valgrind()
    requests.toggle_collect()  # a no-op outside valgrind, not a crash
    requests.dump("nothing")


def test_without_valgrind_the_reason_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert instructions.unavailable_reason() == "valgrind not installed (Debian: apt-get install valgrind)"
    with pytest.raises(instructions.InstructionsUnavailable, match="valgrind not installed"):
        instructions.measure(TINY, "quick")


def test_budget_and_dtypes_decide_what_is_counted():
    import linear_impls

    quick, default = sweep.SWEEPS["quick"], sweep.SWEEPS["default"]
    chosen, skipped = instructions.select_cases(quick, [linear_impls.get("f_linear")])
    assert {c.shape for c in chosen} == set(quick.shapes)
    assert all(c.dtype == "float32" for c in chosen)
    chosen, skipped = instructions.select_cases(default, [linear_impls.get("f_linear")])
    big = instructions.case_key("f_linear", "512x1024x1024", "float32", "forward")
    assert "over the 'default' sweep's budget" in skipped[big]
    assert "instructions are counted in float32" in skipped[instructions.case_key("f_linear", "1x8x8", "float64",
                                                                                   "forward")]
    assert instructions.calls_for(CountedCase("f_linear", "1x8x8", "float32", "forward")) == instructions.MAX_CALLS
    assert instructions.calls_for(CountedCase("f_linear", "1x4096x4096", "float32", "forward")) == 1


def test_sidecar_round_trip_and_delta(tmp_path):
    funcs = {"at::native::addmm_impl(at::Tensor&)": 900.0, "_PyEval_EvalFrameDefault": 99.0, "tiny": 0.5}
    results = {"f_linear 1x8x8 float32 forward": {"instructions": 999.5, "calls": 10, "functions": funcs},
               "bad 1x8x8 float32 forward": {"error": "boom"}}
    path = functioncounts.save(tmp_path, "a" * 40, "virtualenv-py3.11 torch", results, {"cpu": "x"})
    assert path.name == "aaaaaaaa-virtualenv-py3.11_torch.json.gz"
    loaded = functioncounts.load(tmp_path, "a" * 40)
    assert list(loaded) == ["f_linear 1x8x8 float32 forward"]
    kept = loaded["f_linear 1x8x8 float32 forward"]["functions"]
    assert kept["(other functions)"] == 0.5 and "tiny" not in kept  # under the kept share
    head = dict(kept, **{"at::native::addmm_impl(at::Tensor&)": 950.0, "new_fn": 20.0})
    rows = functioncounts.delta(kept, head)
    assert [(r.function, r.change) for r in rows] == [("at::native::addmm_impl(at::Tensor&)", 50.0),
                                                      ("new_fn", 20.0)]
    assert functioncounts.short_function("void at::native::foo<float>(at::Tensor const&, long)") == \
        "void at::native::foo"
    assert functioncounts.format_delta(rows)[0].startswith("+50 instructions/call in at::native::addmm_impl")


def test_machine_name_resolves_as_asv_does(monkeypatch, tmp_path):
    import json
    import platform

    from linear_impls import asvrun

    assert asvrun.machine_name(["--machine", "ci-cpu", "--quick"]) == "ci-cpu"
    assert asvrun.machine_name(["--machine=gpu-box"]) == "gpu-box"
    monkeypatch.setenv("HOME", str(tmp_path))
    host = platform.uname().node
    assert asvrun.machine_name([]) == host  # no machine file: the host name
    (tmp_path / ".asv-machine.json").write_text(json.dumps({"version": 1, "box": {"machine": "box"}}))
    assert asvrun.machine_name([]) == "box"  # asv's rule: the one machine of the file
    (tmp_path / ".asv-machine.json").write_text(json.dumps({"version": 1, "a": {"machine": "a"},
                                                            "b": {"machine": "b"}}))
    assert asvrun.machine_name([]) == host
