"""Shared fixtures: temporary registrations and running the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import linear_impls

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = Path(__file__).resolve().parent / "plugins"


@pytest.fixture
def planted():
    """Register implementations for one test and remove them afterwards."""
    added: list[str] = []

    def plant(name, factory, **kwargs):
        kwargs.setdefault("description", f"planted {name}")
        linear_impls.register(name, **kwargs)(factory)
        added.append(name)
        return linear_impls.get(name)

    yield plant
    for name in added:
        linear_impls.unregister(name)


def run_linbench(*args, plugins: str | None = None, timeout: float = 600, env_extra: dict | None = None):
    """Run ``python -m linear_impls`` in a fresh process; returns CompletedProcess (text)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PLUGIN_DIR), str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("LINEAR_IMPLS_PLUGINS", None)
    if plugins:
        env["LINEAR_IMPLS_PLUGINS"] = plugins
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "linear_impls", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


ASV_FAULTY = ("faulty_dropped_bias", "faulty_abort", "faulty_hang")
# short_form_at: a plugin in register_forward's short form (tests/plugins/short_form_plugin.py).
ASV_GOOD = ("f_linear", "nn_linear", "short_form_at")
ASV_SHAPES = ("3x2x3", "1x8x8")


def asv_config(tmp: Path) -> Path:
    """An asv config like the project's, writing results and HTML under ``tmp``."""
    import json

    conf = {
        "version": 1, "project": "linbench", "project_url": "https://example.invalid/linbench",
        "repo": str(ROOT), "branches": ["main"], "dvcs": "git", "environment_type": "virtualenv",
        "benchmark_dir": str(ROOT / "benchmarks"), "env_dir": str(tmp / "env"),
        "results_dir": str(tmp / "results"), "html_dir": str(tmp / "html"),
        "launch_method": "forkserver", "default_benchmark_timeout": 120,
        "matrix": {"env_nobuild": {"LINBENCH_THREADS": ["2"]}},
    }
    path = tmp / "asv.conf.json"
    path.write_text(json.dumps(conf))
    return path


def run_asv(config: Path, *args, timeout: float = 900, plugins: str | None = None, env_extra: dict | None = None):
    """Real asv, in the test's own Python environment (no virtualenv to build)."""
    asv = str(Path(sys.executable).parent / "asv")
    env = {**os.environ, "LINBENCH_SWEEP": "quick", "LINBENCH_THREADS": "2", **(env_extra or {})}
    if plugins:
        env["LINEAR_IMPLS_PLUGINS"] = plugins
        env["LINBENCH_PLUGIN_PATH"] = str(PLUGIN_DIR)  # asv drops PYTHONPATH; this is its way in
    return subprocess.run([asv, "--config", str(config), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=str(ROOT), stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def asv_run(tmp_path_factory):
    """A real short ``asv run`` on HEAD: two good and three faulty implementations.

    Returns (results folder, asv's CompletedProcess).
    """
    tmp = tmp_path_factory.mktemp("asv")
    config = asv_config(tmp)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    machine = run_asv(config, "machine", "--yes", "--machine", "linbench-test")
    assert machine.returncode == 0, machine.stderr
    impls = "|".join(ASV_GOOD + ASV_FAULTY[:2])
    shapes = "|".join(ASV_SHAPES)
    patterns = [
        rf"^bench_linear\.(?:Inference|Training)\.\w+\('(?:{impls})', '(?:{shapes})', 'float32', 'cpu'\)$",
        # The hanging one costs a timeout per round: one case is enough.
        r"^bench_linear\.Inference\.\w+\('faulty_hang', '3x2x3', 'float32', 'cpu'\)$",
        rf"^bench_linear\.Inference\.\w+\('(?:{'|'.join(ASV_MORE_FAULTY)})', '3x2x3', 'float32', 'cpu'\)$",
        r"^bench_linear\.Environment(?:Gpu|Precision)?\.",
        # The compiled variants' compile cost: n/a in the quick sweep (no compile subset), cheap,
        # and recorded so asv's summary page has a graph for every benchmark it lists.
        r"^bench_linear\.CompileCost\.\w+\('compiled_f_linear', '1x8x8', 'float32', 'cpu', 'forward'\)$",
        # One interleaved speedup and one op trace, so asv's summary page has a graph for those too.
        r"^bench_linear\.Speedup\.\w+\('f_linear', '1x8x8', 'float32', 'cpu', 'forward'\)$",
        r"^bench_linear\.Dispatch\.\w+\('f_linear', '1x8x8', 'float32', 'cpu', 'forward'\)$",
        # The roofline's ceilings, as the sweep measures them.
        r"^bench_linear\.(?:Ceilings\.\w+\('float32', 'cpu'\)|(?:MemoryBandwidth|CacheBandwidth)\.\w+\('cpu'\))$",
    ]
    args = ["run", "-E", f"existing:{sys.executable}", "--set-commit-hash", head, "--machine", "linbench-test",
            "--record-samples", "--show-stderr", "-a", f"timeout={ASV_TIMEOUT}"]
    for p in patterns:
        args += ["-b", p]
    # The speedup worker and the op traces measure what this selects (setup_cache cannot
    # see -b), not the sweep.
    proc = run_asv(config, *args, plugins="asv_faulty_plugin,check_faulty_plugin,short_form_plugin",
                   env_extra={"LINBENCH_SELECT": "|".join(p for p in patterns if "Speedup" in p or "Dispatch" in p)})
    # asv prints one exit status per benchmark (the last failing case's), so the
    # segfault gets a run of its own to show that its signal reaches the log.
    segv_dir = tmp / "segv"
    segv_dir.mkdir()
    segv = run_asv(asv_config(segv_dir), *args[:-len(patterns) * 2], "-b",
                   r"^bench_linear\.Inference\.\w+\('bad_segfault', '3x2x3', 'float32', 'cpu'\)$",
                   plugins="check_faulty_plugin")
    proc.stdout += segv.stdout
    return tmp / "results", proc


ASV_TIMEOUT = 8
# More faults from check_faulty_plugin, and what asv's log must say about each.
ASV_MORE_FAULTY = {
    "bad_raises": "raised RuntimeError: kernel not implemented",
    "bad_nan": "non-finite",
    "bad_shape": "has shape",
    "bad_oom": "out of memory",
    "bad_segfault": "exit status -11",
}


@pytest.fixture(scope="session")
def asv_results_dir(asv_run):
    """The results folder of the short real asv run."""
    return asv_run[0]


ASV_CLONE_MACHINE = "linbench-venv-test"


@pytest.fixture(scope="session")
def asv_clone(tmp_path_factory):
    """A clone of HEAD (asv builds commits) with an asv machine set up: the tests that run
    ``linbench run`` in asv's real virtualenvs share it, so its environment is built once."""
    clone = tmp_path_factory.mktemp("clone") / "linbench"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    asv = str(Path(sys.executable).parent / "asv")
    subprocess.run([asv, "machine", "--yes", "--machine", ASV_CLONE_MACHINE], cwd=clone, check=True,
                   stdout=subprocess.DEVNULL)
    return clone


class ResultsRemote:
    """A bare repository standing for the results branch's remote, cloned as CI runners clone it."""

    SCRIPT = ROOT / ".ci" / "results-branch"

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.path = tmp_path / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", str(self.path)], check=True)

    def clone(self, name: str) -> Path:
        repo = self.tmp_path / name
        subprocess.run(["git", "clone", "-q", str(self.path), str(repo)], check=True, capture_output=True)
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@invalid", "commit", "-q", "--allow-empty",
                        "-m", "init"], cwd=repo, check=True, capture_output=True)
        return repo

    def run(self, repo: Path, action: str) -> subprocess.CompletedProcess:
        """``.ci/results-branch ACTION`` in ``repo``."""
        return subprocess.run(["sh", str(self.SCRIPT), action], cwd=repo, capture_output=True, text=True,
                              timeout=120)


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite the report's golden files (tests/data/report/golden/) from this code")
