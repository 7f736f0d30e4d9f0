"""Wrong implementations of the kinds real authors write must fail a gate; correct
variants that merely compute differently must pass every gate."""

from __future__ import annotations

import pytest
import torch

from linear_impls import gates


def _add_bias(y, bias):
    return y if bias is None else y + bias


def seed_article_bmm(weight, bias):
    # The article's recipe: a batch of 1 on the weight, so bmm only works for batch 1.
    return lambda x: _add_bias(torch.bmm(x.unsqueeze(0), weight.T.unsqueeze(0)).squeeze(0), bias)


def dropped_bias(weight, bias):
    return lambda x: x @ weight.T


def missing_transpose(weight, bias):
    return lambda x: _add_bias(x @ weight, bias)


def half_precision_compute(weight, bias):
    # Computes in bfloat16 whatever the input: float32/float64 results lose precision.
    return lambda x: _add_bias((x.to(torch.bfloat16) @ weight.T.to(torch.bfloat16)).to(x.dtype), bias)


def tf32_like(weight, bias):
    # float32 inputs truncated to TF32's 10-bit mantissa, as a TF32 GEMM would.
    def tf32(t):
        if t.dtype != torch.float32:
            return t
        return (t.contiguous().view(torch.int32) & ~0x1FFF).view(torch.float32)

    return lambda x: _add_bias(tf32(x) @ tf32(weight).T, bias)


def low_precision_accumulation(weight, bias):
    # A running sum kept in the input's dtype: fine in float32, stagnates in bfloat16/float16.
    def forward(x):
        acc = torch.zeros((*x.shape[:-1], weight.shape[0]), dtype=x.dtype, device=x.device)
        for i in range(x.shape[-1]):
            acc = acc + x[..., i : i + 1] * weight[:, i]
        return _add_bias(acc, bias)

    return forward


def detached_parameter(weight, bias):
    w = weight.detach().clone()
    return lambda x: _add_bias(x @ w.T, bias)


class _WrongBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        return x @ weight.T

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        # Forgot the factor of the batch layout: dW is half what it should be.
        return gy @ weight, 0.5 * gy.reshape(-1, gy.shape[-1]).T @ x.reshape(-1, x.shape[-1])


def wrong_custom_backward(weight, bias):
    return lambda x: _add_bias(_WrongBackward.apply(x, weight), bias)


def modifies_input(weight, bias):
    def forward(x):
        x.data.mul_(2)  # "normalises" the caller's tensor in place
        return _add_bias((x @ weight.T) / 2, bias)

    return forward


def modifies_weight(weight, bias):
    def forward(x):
        y = _add_bias(x @ weight.T, bias)
        weight.data.add_(1e-3)
        return y

    return forward


def cached_output(weight, bias):
    cache = {}

    def forward(x):
        if "y" not in cache:
            cache["y"] = _add_bias(x @ weight.T, bias)
        return cache["y"]

    return forward


def two_d_only(weight, bias):
    return lambda x: torch.addmm(bias, x, weight.T) if bias is not None else torch.mm(x, weight.T)


def wrong_output_dtype(weight, bias):
    return lambda x: _add_bias(x.double() @ weight.double().T, None if bias is None else bias.double())


def wrong_empty_batch_shape(weight, bias):
    def forward(x):
        if x.numel() == 0:
            return x.new_zeros((0, weight.shape[0]))
        return _add_bias(x @ weight.T, bias)

    return forward


def nan_output(weight, bias):
    return lambda x: _add_bias(x @ weight.T, bias) * float("nan")


WRONG = [seed_article_bmm, dropped_bias, missing_transpose, half_precision_compute, tf32_like,
         low_precision_accumulation, detached_parameter, wrong_custom_backward, modifies_input, modifies_weight,
         cached_output, two_d_only, wrong_output_dtype, wrong_empty_batch_shape, nan_output]

# What each wrong implementation must be caught by: (dtype, a phrase in some failure's reason).
EXPECTED = {
    "seed_article_bmm": (None, "raised RuntimeError"),
    "dropped_bias": (None, "off by"),
    "missing_transpose": (None, "off by"),
    "half_precision_compute": ("float32", "off by"),
    "tf32_like": ("float32", "off by"),
    "low_precision_accumulation": ("bfloat16", "off by"),
    "detached_parameter": (None, "grad of weight is None"),
    "wrong_custom_backward": (None, "grad of weight"),
    "modifies_input": (None, "input x (call #1) was modified in place"),
    "modifies_weight": (None, "weight was modified in place"),
    "cached_output": (None, "output for input #2"),
    "two_d_only": (None, "raised RuntimeError"),
    "wrong_output_dtype": ("float32", "has dtype float64, expected float32"),
    "wrong_empty_batch_shape": (None, "has shape [0, 8], expected [2, 0, 8]"),
    "nan_output": (None, "non-finite"),
}


def _all_results(rec):
    return gates.run_gates(rec, ["cpu"])


@pytest.mark.parametrize("factory", WRONG, ids=lambda f: f.__name__)
def test_wrong_implementation_fails_a_gate(planted, factory):
    rec = planted(f"planted_{factory.__name__}", factory)
    results = _all_results(rec)
    failed = [r for r in results if r.status == "fail"]
    assert failed, f"{factory.__name__} passed every gate"
    dtype, phrase = EXPECTED[factory.__name__]
    hits = [r for r in failed if phrase in r.reason and (dtype is None or r.dtype == dtype)]
    assert hits, f"no failure mentions {phrase!r}; got: {sorted({r.reason for r in failed})[:5]}"


def reversed_summation(weight, bias):
    return lambda x: _add_bias(x.flip(-1) @ weight.flip(-1).T, bias)


def tensordot(weight, bias):
    return lambda x: _add_bias(torch.tensordot(x, weight, dims=([-1], [1])), bias)


def float64_then_cast(weight, bias):
    def forward(x):
        y = x.double() @ weight.double().T
        if bias is not None:
            y = y + bias.double()
        return y.to(x.dtype)

    return forward


def chunked_sum(weight, bias):
    # Sums in_features in two halves: another order, the same precision.
    def forward(x):
        k = x.shape[-1] // 2
        y = x[..., :k] @ weight[:, :k].T + x[..., k:] @ weight[:, k:].T
        return _add_bias(y, bias)

    return forward


CORRECT = [reversed_summation, tensordot, float64_then_cast, chunked_sum]


@pytest.mark.parametrize("factory", CORRECT, ids=lambda f: f.__name__)
def test_correct_variant_passes_every_gate(planted, factory):
    rec = planted(f"variant_{factory.__name__}", factory)
    results = _all_results(rec)
    failed = [f"{r.case}/{r.dtype}/{r.check}: {r.reason}" for r in results if r.status != "pass"]
    assert not failed, failed[:5]
    assert {r.dtype for r in results} == set(gates.DTYPES)


def test_exception_is_a_failed_case_not_a_crash(planted):
    def raises(weight, bias):
        def forward(x):
            raise ValueError("boom")
        return forward

    rec = planted("planted_raises", raises)
    results = _all_results(rec)
    assert all(r.status == "fail" and "raised ValueError: boom" in r.reason for r in results)
    assert len(results) == len(list(gates.iter_checks(rec, ["cpu"])))


def test_factory_error_is_a_failed_case(planted):
    def bad_factory(weight, bias):
        raise RuntimeError("cannot build")

    rec = planted("planted_bad_factory", bad_factory)
    res = gates.run_check(rec, gates.CASES[0], "float32", "cpu", "forward")
    assert res.status == "fail" and "cannot build" in res.reason


def test_tolerance_scales_with_k_and_dtype():
    ones = torch.ones(1, dtype=torch.float64)
    assert gates.tolerance(ones, 0.0, 1024, "float32") > gates.tolerance(ones, 0.0, 16, "float32")
    assert gates.tolerance(ones, 0.0, 16, "bfloat16") > gates.tolerance(ones, 0.0, 16, "float32")
    # float32's tolerance at modest K is far below TF32's unit roundoff.
    assert gates.tolerance(ones, 0.0, 16, "float32") < 2.0**-11 / 10
