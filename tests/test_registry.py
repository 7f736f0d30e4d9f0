"""The registry's public API and its errors at registration time."""

from __future__ import annotations

import pytest
import torch

import linear_impls
from linear_impls import RegistryError, checks

from .conftest import run_linbench


def _ok(weight, bias):
    return lambda x: x @ weight.T + bias


def test_names_sorted_and_get_returns_record():
    names = linear_impls.names()
    assert names == sorted(names)
    rec = linear_impls.get("f_linear")
    assert rec.name == "f_linear" and rec.expression == "F.linear(x, W, b)" and rec.description


def test_unknown_name_lists_known():
    with pytest.raises(KeyError) as err:
        linear_impls.get("no_such_impl")
    assert "no_such_impl" in str(err.value) and "f_linear" in str(err.value)


def test_register_returns_factory_unchanged(planted):
    rec = planted("tmp_ok", _ok, description="x @ W.T + b, written out")
    assert rec.factory is _ok and "tmp_ok" in linear_impls.names()
    assert rec.expression == "x @ W.T + b, written out"  # defaults to the description


def test_duplicate_name_rejected(planted):
    planted("tmp_dup", _ok)
    with pytest.raises(RegistryError, match="already registered"):
        linear_impls.register("tmp_dup", description="again")(_ok)
    with pytest.raises(RegistryError, match="already registered"):
        linear_impls.register("f_linear", description="shadowing a built-in")


@pytest.mark.parametrize("bad", ["", "has space", "1starts_with_digit", "semi;colon", "<script>", 3])
def test_bad_names_rejected(bad):
    with pytest.raises(RegistryError, match="not a plain identifier"):
        linear_impls.register(bad, description="d")


def test_name_defaults_to_the_function_name():
    def tmp_named_by_def(weight, bias):
        return lambda x: x @ weight.T

    try:
        linear_impls.register(description="named after its function")(tmp_named_by_def)
        assert linear_impls.get("tmp_named_by_def").factory is tmp_named_by_def
    finally:
        linear_impls.unregister("tmp_named_by_def")


def test_short_form_adds_or_passes_the_bias():
    def tmp_short_two(x, weight):
        return x @ weight.T

    def tmp_short_three(x, weight, bias):
        return torch.nn.functional.linear(x, weight, bias)

    try:
        assert linear_impls.register_forward(description="two")(tmp_short_two) is tmp_short_two
        linear_impls.register_forward(description="three")(tmp_short_three)
        x, w, b = torch.randn(3, 4), torch.randn(5, 4), torch.randn(5)
        for name in ("tmp_short_two", "tmp_short_three"):
            rec = linear_impls.get(name)
            assert torch.allclose(rec.build(w, b)(x), x @ w.T + b) and torch.allclose(rec.build(w, None)(x), x @ w.T)
            # Its checks run and pass, and the check cache keys on the module that wrote it.
            res = checks.run_check(rec, checks.CASES[1], "float32", "cpu", "backward")
            assert res.status == "pass", res.reason
            assert rec.factory.__module__ == __name__
    finally:
        linear_impls.unregister("tmp_short_two")
        linear_impls.unregister("tmp_short_three")
    with pytest.raises(RegistryError, match=r"must take \(x, weight\) or \(x, weight, bias\)"):
        linear_impls.register_forward(description="one")(lambda x: x)


def test_the_baseline_is_a_flag_of_the_registry():
    assert linear_impls.baseline() == "nn_linear" and linear_impls.get("nn_linear").baseline
    with pytest.raises(RegistryError, match="already the baseline"):
        linear_impls.register("tmp_second_baseline", description="d", baseline=True)(_ok)
    assert "tmp_second_baseline" not in linear_impls.names()


def test_a_short_form_plugin_is_checked():
    proc = run_linbench("check", "--impl", "short_form_at", plugins="short_form_plugin")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "short_form_at" in proc.stdout and " 0 failed" in proc.stdout


@pytest.mark.parametrize("factory", [
    lambda weight: None,
    lambda weight, bias, extra: None,
    lambda: None,
], ids=["one_arg", "three_args", "no_args"])
def test_wrong_signature_rejected(factory):
    with pytest.raises(RegistryError, match=r"must take \(weight, bias\)"):
        linear_impls.register("tmp_badsig", description="d")(factory)
    assert "tmp_badsig" not in linear_impls.names()


def test_not_callable_rejected():
    with pytest.raises(RegistryError, match="not callable"):
        linear_impls.register("tmp_notcallable", description="d")(42)


def test_empty_description_rejected():
    with pytest.raises(RegistryError, match="description"):
        linear_impls.register("tmp_nodesc", description="  ")


def test_select_globs():
    assert [i.name for i in linear_impls.select(["*_t"])] == ["matmul_t"]
    assert {i.name for i in linear_impls.select(["f_*", "nn_*"])} == {"f_linear", "nn_linear"}
    with pytest.raises(KeyError, match="no implementation matches 'zzz\\*'"):
        linear_impls.select(["zzz*"])


def test_limits_skip_instead_of_fail(planted):
    from linear_impls import checks

    rec = planted("tmp_2d_declared", lambda w, b: (lambda x: x @ w.T + b),
                  limits=linear_impls.Limits(max_rank=2))
    rank3 = next(c for c in checks.CASES if c.id == "rank3")
    res = checks.run_check(rec, rank3, "float32", "cpu", "forward")
    assert res.status == "skip" and "max input rank 2" in res.reason
