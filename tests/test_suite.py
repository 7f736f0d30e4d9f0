"""The suite's catalogue (linear_impls/suite.py) agrees with what asv discovers, with asv.conf.json,
with the history's deciding metrics and with the run's patterns: a metric added to the benchmarks
and not to the catalogue fails here instead of being mislabelled on the page."""

from __future__ import annotations

import json

import pytest

from linear_impls import asvconf, history, suite, sweep

from .conftest import ROOT


def test_every_benchmark_asv_discovers_is_catalogued_with_its_parameters(asv_results_dir):
    discovered = json.loads((asv_results_dir / "benchmarks.json").read_text())
    names = {k: v for k, v in discovered.items() if k != "version"}
    assert len(names) > 20
    for full, meta in names.items():
        cls, method = full.split(".")[-2:]
        if cls in suite.BOOKKEEPING:
            continue
        metric = suite.of(full)
        assert metric is not None, f"{full}: add it to linear_impls/suite.py's METRICS"
        assert tuple(meta["param_names"]) == metric.params, full
    catalogued = {m.asv_name for m in suite.METRICS}
    assert catalogued <= set(names), catalogued - set(names)


def test_asv_conf_thresholds_are_the_catalogues():
    assert history.load_thresholds(ROOT / "asv.conf.json") == suite.thresholds()


def test_the_history_decides_with_the_catalogues_deciding_metrics():
    assert set(history.DECIDING) == {m.kind for m in suite.METRICS if m.decides}
    assert {m.benchmark for m in history.METRICS if m.decides} == {m.name for m in suite.METRICS if m.decides}


@pytest.mark.parametrize("sweep_name", ["default", "full"])
def test_every_metric_has_the_pattern_family_that_runs_it(sweep_name):
    patterns = asvconf.case_patterns(sweep.SWEEPS[sweep_name], devices=["cpu", "cuda"])
    import re

    for m in suite.METRICS:
        assert m.family in patterns, (m.name, m.family)
        case = {"impl": "'compiled_f_linear'" if m.family == "Compiled" else "'f_linear'", "shape": "'64x256x256'",
                "dtype": "'float32'", "device": "'cpu'" if m.fixed.get("device") != "cuda" else "'cuda'",
                "mode": "'forward'"}
        name = f"{m.asv_name}({', '.join(case[p] for p in m.params)})"
        assert re.search(patterns[m.family], name), (name, patterns[m.family])


def test_every_linbench_variable_spelled_anywhere_is_named_in_envvars():
    import re

    from linear_impls import envvars

    spelled = set()
    for path in [*ROOT.glob("linear_impls/**/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("benchmarks/*.sh"),
                 ROOT / "Makefile", *ROOT.glob(".ci/*"), ROOT / "README.md", ROOT / "asv.conf.json"]:
        if path.is_file():
            spelled |= set(re.findall(r"\bLINBENCH_[A-Z_]*[A-Z]\b", path.read_text(errors="replace")))
    assert spelled - envvars.NAMES == set()
