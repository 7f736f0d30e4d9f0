"""The linbench command line, run as a user would run it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from linear_impls import checks, dropin, sweep

from .conftest import run_linbench

BUILTINS = {"nn_linear", "f_linear", "matmul_t", "at_operator", "bmm", "einsum", "custom_parameter",
            "addmm", "mul_sum"}


@pytest.fixture(scope="module")
def check_all():
    proc = run_linbench("check", "--json")
    return proc


def test_check_json_all_builtins_pass_everywhere(check_all):
    assert check_all.returncode == 0, check_all.stderr[-2000:]
    rows = json.loads(check_all.stdout)
    keys = {"impl", "check", "shape", "in_features", "out_features", "bias", "dtype", "device", "status", "reason"}
    assert all(keys <= set(r) for r in rows)
    assert BUILTINS <= {r["impl"] for r in rows}
    for impl in BUILTINS:
        mine = [r for r in rows if r["impl"] == impl]
        assert all(r["status"] == "pass" for r in mine), [r for r in mine if r["status"] != "pass"][:3]
        outputs = [r for r in mine if not dropin.is_dropin(r["check"])]
        assert {r["dtype"] for r in outputs} == {"float64", "float32", "bfloat16", "float16"}
        assert {r["check"] for r in outputs} == {"forward", "backward"}
        assert {len(r["shape"]) for r in outputs} == {1, 2, 3, 4}
        assert len(outputs) == len(checks.CASES) * 4 * 2
        # The module implementations are drop-in replacements for nn.Linear; the others are not modules.
        assert {r["check"] for r in mine if dropin.is_dropin(r["check"])} == (
            set(dropin.CHECKS) if impl in ("nn_linear", "custom_parameter") else set())


def test_check_exit_0_for_a_right_layer_that_is_not_a_dropin(check_all):
    # The seed article's layer: every output right (bias-less cases skipped), init and attributes not nn.Linear's.
    rows = [r for r in json.loads(check_all.stdout) if r["impl"] == "custom_linear_layer"]
    assert {r["status"] for r in rows if not dropin.is_dropin(r["check"])} == {"pass", "skip"}
    assert {r["check"]: r["status"] for r in rows if dropin.is_dropin(r["check"])} == {
        "dropin_state_dict": "pass", "dropin_init": "fail", "dropin_attributes": "fail", "dropin_portability": "pass"}


def test_check_table_names_what_is_not_a_dropin():
    proc = run_linbench("check", "--impl", "custom_*", "--dtype", "float32")
    assert proc.returncode == 0, proc.stderr
    assert "NOT A DROP-IN REPLACEMENT FOR nn.Linear" in proc.stdout
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("custom_linear_layer "))
    assert "no: init, attributes" in line and " ok " in line, line
    assert "13.9x nn.Linear's" in proc.stdout
    strict = run_linbench("check", "--impl", "custom_*", "--dtype", "float32", "--require-dropin")
    assert strict.returncode == 1, strict.stdout[-2000:]


def test_check_table_and_exit_1_on_failure():
    proc = run_linbench("check", "--impl", "plugin_*", "--impl", "f_linear", "--dtype", "float32",
                        plugins="good_plugin")
    assert proc.returncode == 0, proc.stderr
    assert "plugin_tensordot" in proc.stdout and "f_linear" in proc.stdout and "0 failed" in proc.stdout


def test_list_json_has_builtins_and_plugin():
    proc = run_linbench("list", "--json", plugins="good_plugin")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert BUILTINS <= set(rows)
    assert rows["f_linear"]["expression"] == "F.linear(x, W, b)"
    assert rows["plugin_tensordot"]["source"] == "good_plugin"
    assert {"name", "expression", "description", "limits"} <= set(rows["bmm"])


def _one_error_line(proc, *phrases):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in lines if ln.startswith("linbench: error:")]
    assert len(errors) == 1, lines
    for p in phrases:
        assert p in errors[0], errors[0]
    return errors[0]


def test_unknown_impl_lists_known():
    _one_error_line(run_linbench("check", "--impl", "nope"), "no implementation matches 'nope'", "f_linear")


def test_glob_matching_nothing():
    _one_error_line(run_linbench("check", "--impl", "zz*"), "'zz*'", "nn_linear")


def test_unknown_dtype():
    _one_error_line(run_linbench("check", "--dtype", "float8"), "unknown dtype 'float8'", "bfloat16")


def test_unknown_device():
    _one_error_line(run_linbench("check", "--device", "tpu"), "unknown device 'tpu'")


@pytest.mark.skipif("cuda" in sweep.available_devices(), reason="cuda is available here")
def test_unavailable_device_says_what_is_available():
    _one_error_line(run_linbench("check", "--device", "cuda"), "'cuda' is not available", "available: cpu")


def test_unknown_command_and_option():
    _one_error_line(run_linbench("frobnicate"), "invalid choice")
    _one_error_line(run_linbench("check", "--bogus"), "unrecognized arguments")


@pytest.mark.parametrize("plugin, phrase", [
    ("broken_import_plugin", "ImportError: no module named 'fancy_kernels'"),
    ("broken_factory_plugin", "must take (weight, bias)"),
    ("no_such_plugin_module", "ModuleNotFoundError"),
])
def test_broken_plugin_named_and_builtins_still_work(plugin, phrase):
    proc = run_linbench("list", "--json", plugins=plugin)
    line = _one_error_line(proc, plugin, phrase)
    assert "built-ins still available" in line
    names = {r["name"] for r in json.loads(proc.stdout)}
    assert BUILTINS <= names and "half_registered" not in names


def test_python_dash_m_and_console_script_agree():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    script = shutil.which("linbench") or str(Path(sys.executable).parent / "linbench")
    direct = subprocess.run([script, "list", "--json"], capture_output=True, text=True)
    assert direct.returncode == 0
    assert json.loads(direct.stdout) == json.loads(run_linbench("list", "--json").stdout)


def test_entry_point_plugin(tmp_path):
    """A package that declares [project.entry-points.linear_impls] is picked up without env vars."""
    dist = tmp_path / "ep_plugin_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[linear_impls]\nep_impl = ep_plugin_mod\n")
    (tmp_path / "ep_plugin_mod.py").write_text(
        "import linear_impls\n"
        "@linear_impls.register('ep_addmm', description='registered through an entry point')\n"
        "def ep_addmm(weight, bias):\n"
        "    return lambda x: x @ weight.T if bias is None else x @ weight.T + bias\n")
    import os

    proc = run_linbench("list", "--json", env_extra={"PYTHONPATH": os.pathsep.join(
        [str(tmp_path), os.environ.get("PYTHONPATH", ""), str(Path(__file__).resolve().parent.parent)])})
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert "ep_addmm" in rows and "entry point ep_impl" in rows["ep_addmm"]["source"]
