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
    assert set(history.deciding()) == {m.kind for m in suite.METRICS if m.decides}
    assert {m.name for m in history.metrics() if m.decides} == {m.name for m in suite.METRICS if m.decides}


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


def test_a_new_metric_needs_only_its_benchmark_and_its_catalogue_entry(monkeypatch, tmp_path):
    """A metric added to the catalogue alone is selected by its family's pattern, labelled and
    given its unit by the loader, drawn in the history with what it measures, and shown on the
    page (its benchmark in bench_linear.py is the other file).  A metric that decides also needs
    its threshold in asv.conf.json, which test_asv_conf_thresholds_are_the_catalogues asks for."""
    import re

    from linear_impls import report
    from linear_impls.report import load

    from . import test_history

    new = suite.Metric("Widgets.track_widgets", "widgets", "count", suite.CASE_PARAMS, {}, "Dispatch",
                       label="widgets per call", about="how many widgets a call makes, a test's own metric.",
                       drawn=True)
    monkeypatch.setattr(suite, "METRICS", (*suite.METRICS, new))

    name = "bench_linear.Widgets.track_widgets('f_linear', '64x256x256', 'float32', 'cpu', 'forward')"
    assert re.search(asvconf.case_patterns(sweep.SWEEPS["default"], devices=["cpu"])["Dispatch"], name)
    assert suite.of(new.asv_name) == new and new in history.metrics() and "widgets" not in history.deciding()

    # Two machines' histories, each commit's file holding the new metric too: 3 widgets a call,
    # then 6 from the commit where the instruction count steps.
    results = test_history.write_history(tmp_path)
    test_history.write_history(tmp_path, machine="quiet", step=False, seed=1)
    for path in results.glob("*/*-*.json"):
        data = json.loads(path.read_text())
        if "results" not in data:
            continue
        params = data["results"]["bench_linear.Instructions.track_instructions"][1]
        step = test_history.COMMITS.index(data["commit_hash"]) >= test_history.STEP_AT
        data["results"][new.asv_name] = test_history.entry(params, [6.0 if step else 3.0, 3.0])
        path.write_text(json.dumps(data))

    rows = report.load_results(results).frame
    widgets = rows[rows["benchmark"] == new.asv_name]
    assert set(widgets["kind"]) == {"widgets"} and set(widgets["value"]) == {3.0, 6.0}
    assert load.unit_of()["widgets"] == "count"

    out = tmp_path / "index.html"
    report.build_report(results, out, asv_conf=ROOT / "asv.conf.json")
    page = out.read_text()
    hist = page.split('id="history"')[1].split('<h2 id="env"')[0]
    # In the history's legend with what it measures, and a panel of the change's chart; drawn,
    # so its own doubling is not a change.
    assert "<b>widgets per call</b>: how many widgets a call makes" in hist
    assert hist.count(">widgets per call<") >= 1 and "1 change." in hist
    # In the side-by-side tables of the two machines, as a column of each cell.
    assert 'title="widgets per call"' in page
