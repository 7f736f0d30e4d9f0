"""A user's own implementation in the environments asv really builds (virtualenvs, as
asv.conf.json has): a module in a folder outside the project and a package with an entry
point both reach the results and the page; one that cannot load there stops the run."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from linear_impls import results, sweep

from .conftest import ASV_CLONE_MACHINE, ROOT, run_linbench

pytestmark = pytest.mark.slow

MACHINE = ASV_CLONE_MACHINE
TWICE = '''\
"""F.linear computed twice ({how})."""
import torch.nn.functional as F

import linear_impls


@linear_impls.register_forward(description="F.linear, computed twice")
def {name}(x, weight, bias):
    F.linear(x, weight, bias)
    return F.linear(x, weight, bias)
'''
PACKAGE_TOML = '''\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "linbench-twice-ep"
version = "0.1.0"

[project.entry-points.linear_impls]
twice_ep = "twice_ep.impl"
'''


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def user(tmp_path_factory, asv_clone):
    """A clone of HEAD (asv builds commits), the user's plugin folder and an installed plugin package."""
    tmp = tmp_path_factory.mktemp("user")
    clone = asv_clone
    mods = tmp / "my_plugins"
    _write(mods / "twice_linear.py", TWICE.format(how="a module in a folder of its own", name="twice_linear"))
    pkg = tmp / "pkg"
    _write(pkg / "pyproject.toml", PACKAGE_TOML)
    _write(pkg / "twice_ep" / "__init__.py", "")
    _write(pkg / "twice_ep" / "impl.py", TWICE.format(how="a package's entry point", name="twice_ep"))
    site = tmp / "site"  # the package installed, as a user's pip install puts it on the path
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--target", str(site), str(pkg)], check=True)
    return {"tmp": tmp, "clone": clone, "mods": mods, "site": site}


def _run(user, *args, plugins=None, path=(), pythonpath=()):
    env = {"LINBENCH_PLUGIN_PATH": os.pathsep.join(str(p) for p in path),
           "PYTHONPATH": os.pathsep.join([*(str(p) for p in pythonpath), str(ROOT)])}
    return run_linbench("run", "--root", str(user["clone"]), "--sweep", "quick", "--dtype", "float32", *args,
                        "--", "--machine", MACHINE, plugins=plugins, env_extra=env, timeout=900)


def test_a_module_and_a_package_reach_every_metric_and_the_page(user):
    proc = _run(user, "--impl", "twice_linear", "--impl", "twice_ep", plugins="twice_linear",
                path=[user["mods"]], pythonpath=[user["site"]])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "installing plugin packages" in proc.stdout
    files = list(results.iter_files(user["clone"] / ".asv" / "results", machine=MACHINE))
    assert files and all(f.env_name.startswith("virtualenv-") for f in files)
    measured: dict[tuple, float] = {}
    for res in files:
        for case in results.iter_cases(res):
            params = tuple(p.strip("'") for p in case.params)
            if len(params) < 4 or case.value is None or math.isnan(case.value):
                continue
            if params[0] in ("twice_linear", "twice_ep") and params[3] == "cpu":
                measured[(case.benchmark, *params[:3], *params[4:])] = case.value
    quick = sweep.SWEEPS["quick"].shapes
    wanted = ["bench_linear.Inference.time_forward", "bench_linear.Training.time_forward_backward"]
    for impl in ("twice_linear", "twice_ep"):
        for shape in quick:
            for name in wanted:
                assert (name, impl, shape, "float32") in measured, (name, impl, shape)
            for mode in sweep.MODES:
                assert ("bench_linear.RelativeToTorch.track_ratio", impl, shape, "float32", mode) in measured
    page = user["tmp"] / "index.html"
    rep = run_linbench("report", "--results", str(user["clone"] / ".asv" / "results"), "--out", str(page))
    assert rep.returncode == 0, rep.stderr
    html = page.read_text()
    assert "twice_linear" in html and "twice_ep" in html
    # A page of this run alone (the clone's results folder holds other tests' runs too): the run
    # recorded that it was asked for the quick sweep, and the page judges it against that sweep
    # (float32 only), never against the default sweep's cases or dtypes.
    alone = user["tmp"] / "alone"
    shutil.rmtree(alone, ignore_errors=True)
    shutil.copytree(user["clone"] / ".asv" / "results" / MACHINE, alone / MACHINE)
    shutil.copy(user["clone"] / ".asv" / "results" / "benchmarks.json", alone)
    page = user["tmp"] / "alone.html"
    rep = run_linbench("report", "--results", str(alone), "--out", str(page))
    assert rep.returncode == 0, rep.stderr
    html = page.read_text()
    assert "twice_linear" in html and "1x64x64" in html
    assert "timed cases of the default sweep" not in html and "cases of the default sweep" not in html
    assert "Not timed in this run" not in html
    assert set(re.findall(r"timed cases of the (\w+) sweep\b", html)) <= {"quick"}


def test_a_plugin_that_raises_on_import_stops_the_run_before_asv(user):
    _write(user["mods"] / "raising_plugin.py", 'raise RuntimeError("broken on purpose")\n')
    proc = _run(user, plugins="raising_plugin", path=[user["mods"]])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "raising_plugin" in lines[0] and "broken on purpose" in lines[0], proc.stderr
    assert "asv" not in proc.stdout and "Traceback" not in proc.stderr


def test_a_plugin_that_cannot_load_inside_asv_fails_the_run_before_any_timing(user):
    # It loads here (its helper is on PYTHONPATH), not in asv's environment (which drops that).
    helpers = user["tmp"] / "helpers"
    _write(helpers / "helper_only_here.py", "VALUE = 1\n")
    _write(user["tmp"] / "mods2" / "needs_helper.py", "import helper_only_here  # noqa: F401\n"
           + TWICE.format(how="needing a helper", name="needs_helper"))
    results_dir = user["clone"] / ".asv" / "results" / MACHINE
    def recorded():  # the results files' times (machine.json is rewritten by any asv run)
        return sorted(p.stat().st_mtime for p in results_dir.glob("*-*.json"))

    before = recorded()
    proc = _run(user, "--impl", "needs_helper", plugins="needs_helper", path=[user["tmp"] / "mods2"],
                pythonpath=[helpers])
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs_helper" in lines[0] and "helper_only_here" in lines[0], proc.stderr
    assert "inside asv's environment" in lines[0] and "Traceback" not in proc.stderr
    assert "[1/" not in proc.stdout  # no chunk started
    assert recorded() == before
    # Plain asv: the same plugin fails asv's discovery, loudly.
    asv = str(Path(sys.executable).parent / "asv")
    env = {**os.environ, "LINEAR_IMPLS_PLUGINS": "needs_helper",
           "LINBENCH_PLUGIN_PATH": str(user["tmp"] / "mods2"), "LINBENCH_SWEEP": "quick"}
    plain = subprocess.run([asv, "run", "HEAD^!", "--bench", "just-discover", "--machine", MACHINE],
                           cwd=user["clone"], env=env, capture_output=True, text=True, timeout=600)
    assert plain.returncode != 0
    assert "linbench: plugin error: needs_helper: ModuleNotFoundError" in plain.stdout + plain.stderr


def test_an_implementation_asv_does_not_see_is_named_before_any_timing(user):
    # Registers outside asv only (asv sets $ASV in its environments): absent there in silence.
    _write(user["tmp"] / "mods3" / "outside_asv.py", textwrap.dedent('''\
        import os
        import linear_impls
        if os.environ.get("ASV") != "true":
            @linear_impls.register_forward(description="seen outside asv only")
            def outside_asv(x, weight):
                return x @ weight.T
        '''))
    proc = _run(user, "--impl", "outside_asv", plugins="outside_asv", path=[user["tmp"] / "mods3"])
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not see outside_asv" in lines[0], proc.stderr
    assert "[1/" not in proc.stdout
