"""The asv_runner internals the suite patches are still there: this fails loudly when a new
asv_runner renames or stops using them, instead of the timings quietly changing."""

from __future__ import annotations

import sys

import pytest

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import asv_patches  # noqa: E402


def test_installed_asv_runner_takes_both_patches():
    assert asv_patches.problems() == []


def test_a_changed_asv_runner_is_reported(monkeypatch):
    from asv_runner.benchmarks import time as asv_time

    monkeypatch.delattr(asv_time.TimeBenchmark, "_param_bound_func")
    monkeypatch.setattr(asv_patches, "VALIDATED", ("0.0.1",))
    found = asv_patches.problems()
    assert any("_param_bound_func" in p for p in found), found
    assert any("not among the releases" in p and "compare_timer.py" in p for p in found), found


@pytest.mark.parametrize("attr", ["_setup_isolates_timed_calls"])
def test_a_missing_switch_is_reported(monkeypatch, attr):
    from asv_runner.benchmarks import time as asv_time

    monkeypatch.delattr(asv_time.TimeBenchmark, attr)
    assert any(attr in p for p in asv_patches.problems())
