"""Every registered implementation against the float64 reference, case by case.

Parametrized over the registry: an implementation added to it is checked here
without touching this file.
"""

from __future__ import annotations

import pytest

import linear_impls
from linear_impls import checks

IMPLS = linear_impls.names()


@pytest.mark.parametrize("check", checks.CHECKS)
@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16", "float16"])
@pytest.mark.parametrize("case", checks.CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("impl", IMPLS)
def test_gate(impl, case, dtype, check):
    rec = linear_impls.get(impl)
    res = checks.run_check(rec, case, dtype, "cpu", check)
    if not case.bias and rec.limits.bias_required:  # a module whose constructor takes no bias
        assert res.status == "skip", res.reason
        return
    assert res.status == "pass", res.reason
    # A correct implementation is comfortably inside the bound, not at its edge.
    assert res.max_error_ratio is not None and res.max_error_ratio < 1.0


def test_builtin_names():
    expected = {"nn_linear", "f_linear", "matmul_t", "at_operator", "bmm", "einsum", "custom_parameter",
                "addmm", "mul_sum", "custom_linear_layer"}
    assert expected <= set(linear_impls.names())


def test_case_set_covers_what_the_checks_promise():
    ranks = {len(c.shape.input_shape) for c in checks.CASES}
    assert {1, 2, 3, 4} <= ranks
    assert any(c.shape.rows == 0 for c in checks.CASES)
    assert any(c.shape.in_features == 1 for c in checks.CASES) and any(c.shape.out_features == 1 for c in checks.CASES)
    assert any(c.layout != "contiguous" for c in checks.CASES)
    assert any(not c.bias for c in checks.CASES) and any(c.bias for c in checks.CASES)
