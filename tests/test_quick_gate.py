"""The README's pytest-benchmark flow, end to end: save a run, compare, fail on a planted slowdown.

The planted slowdown (``tests/plugins/slow_f_linear_plugin.py``) sleeps 1 ms per
call of a ~10 µs case, a 100x change: the assertion is about the flow, not about
resolving small differences on a noisy machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import PLUGIN_DIR, ROOT

CASE = "f_linear-1x64x64-float32-forward"


def quick_gate(storage, *args, plugins=None):
    env = dict(os.environ)
    env.pop("LINEAR_IMPLS_PLUGINS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(PLUGIN_DIR), env.get("PYTHONPATH", "")])
    if plugins:
        env["LINEAR_IMPLS_PLUGINS"] = plugins
    cmd = [sys.executable, "-m", "pytest", "benchmarks/quick_gate", "-q", "-p", "no:cacheprovider",
           "-k", f"{CASE} and not forward_backward", f"--benchmark-storage=file://{storage}",
           "--benchmark-max-time=0.2", "--benchmark-min-rounds=20", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_save_compare_and_fail_on_a_planted_slowdown(tmp_path):
    storage = tmp_path / "benchmarks"
    saved = quick_gate(storage, "--benchmark-save=before")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert "1 passed" in saved.stdout
    files = list(storage.rglob("0001_before.json"))
    assert len(files) == 1
    run = json.loads(files[0].read_text())
    (bench,) = run["benchmarks"]
    assert bench["extra_info"]["impl"] == "f_linear" and bench["extra_info"]["shape"] == "1x64x64"
    assert bench["extra_info"]["threads"] >= 1 and bench["stats"]["median"] > 0

    # The same code against the saved run, with a tolerance no noise here reaches: passes.
    same = quick_gate(storage, "--benchmark-compare=0001", "--benchmark-compare-fail=median:400%")
    assert same.returncode == 0, same.stdout + same.stderr

    # f_linear replaced by a plugin that sleeps 1 ms per call: the README's 10% check fails.
    slow = quick_gate(storage, "--benchmark-compare=0001", "--benchmark-compare-fail=median:10%",
                      plugins="slow_f_linear_plugin")
    assert slow.returncode != 0, slow.stdout + slow.stderr
    out = slow.stdout + slow.stderr
    assert "Performance has regressed" in out and "median" in out, out[-3000:]


def test_quick_gate_is_not_part_of_the_unit_tests():
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                               cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert "test_quick.py" not in collected.stdout
    assert "tests/test_gate.py" in collected.stdout
