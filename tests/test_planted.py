"""Wrong implementations of the kinds real authors write must fail a check; correct
variants that merely compute differently must pass every gate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from linear_impls import checks


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


def pairwise_low_accumulation(weight, bias):
    # Products in float32, summed pairwise with every partial sum rounded to the input's
    # dtype: no single step loses much, so it stays under the absolute bound, but a half
    # type loses one rounding per level of the tree where torch rounds once.
    def forward(x):
        ct = torch.promote_types(x.dtype, torch.float32)
        p = x.unsqueeze(-2).to(ct) * weight.to(ct)
        while p.shape[-1] > 1:
            if p.shape[-1] % 2:
                p = torch.cat([p, torch.zeros_like(p[..., :1])], -1)
            p = (p[..., 0::2] + p[..., 1::2]).to(x.dtype).to(ct)
        return _add_bias(p[..., 0].to(x.dtype), bias)

    return forward


def blocked_low_accumulation(weight, bias):
    # Blocks of 64 summed in float32 (a tiled kernel), the block results added up in the
    # input's dtype: exact for short rows, a rounding per block in long ones.
    def forward(x):
        ct = torch.promote_types(x.dtype, torch.float32)
        acc = None
        for k in range(0, x.shape[-1], 64):
            part = F.linear(x[..., k:k + 64].to(ct), weight[:, k:k + 64].to(ct)).to(x.dtype)
            acc = part if acc is None else acc + part
        return _add_bias(acc, bias)

    return forward


def prepared_transpose(weight, bias):
    # The weight transposed into a contiguous copy once, when built (a faster GEMM layout).
    # Gradients still reach the weight through the copy, so it passes with fixed
    # parameters; after optimizer.step() it keeps computing with the old weight.
    wt = weight.t().contiguous()
    return lambda x: _add_bias(x @ wt, bias)


def captured_bias(weight, bias):
    # The bias copied once when built (say, to cast it ahead), gradients still flowing to it.
    b = None if bias is None else bias.clone()
    return lambda x: _add_bias(x @ weight.T, b)


WRONG = [seed_article_bmm, dropped_bias, missing_transpose, half_precision_compute, tf32_like,
         low_precision_accumulation, detached_parameter, wrong_custom_backward, modifies_input, modifies_weight,
         cached_output, two_d_only, wrong_output_dtype, wrong_empty_batch_shape, nan_output,
         pairwise_low_accumulation, blocked_low_accumulation, prepared_transpose, captured_bias]

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
    # Under the absolute bound everywhere; caught only against torch's own error.
    "pairwise_low_accumulation": ("bfloat16", "torch's own (F.linear)"),
    "blocked_low_accumulation": ("bfloat16", "torch's own (F.linear)"),
    "prepared_transpose": (None, "after the parameters were updated in place off by"),
    "captured_bias": (None, "after the parameters were updated in place off by"),
}
# Caught only by what the checks gained with the criterion against torch and the updates:
# no failure of theirs may come from the absolute bound alone before those.
NEW_KINDS = ("pairwise_low_accumulation", "blocked_low_accumulation", "prepared_transpose", "captured_bias")


def _all_results(rec):
    return checks.run_all(rec, ["cpu"])


@pytest.mark.parametrize("factory", WRONG, ids=lambda f: f.__name__)
def test_wrong_implementation_fails_a_check(planted, factory):
    rec = planted(f"planted_{factory.__name__}", factory)
    results = _all_results(rec)
    failed = [r for r in results if r.status == "fail"]
    assert failed, f"{factory.__name__} passed every check"
    dtype, phrase = EXPECTED[factory.__name__]
    hits = [r for r in failed if phrase in r.reason and (dtype is None or r.dtype == dtype)]
    assert hits, f"no failure mentions {phrase!r}; got: {sorted({r.reason for r in failed})[:5]}"


@pytest.mark.parametrize("name", NEW_KINDS)
def test_new_kinds_pass_every_check_that_came_before(planted, name):
    # Their failures must all come from the criterion against torch or the parameter updates:
    # the absolute bound on fixed parameters alone lets each of them through.
    factory = next(f for f in WRONG if f.__name__ == name)
    rec = planted(f"planted_old_{name}", factory)
    failed = [r for r in _all_results(rec) if r.status == "fail"]
    older = [f"{r.case}/{r.dtype}/{r.check}: {r.reason}" for r in failed if r.case in CASES_BEFORE
             and "torch's own" not in r.reason and "update" not in r.reason]
    assert failed and not older, older[:3]


# The check cases before the long sums were added (which the bound alone may catch).
CASES_BEFORE = {c.id for c in checks.CASES} - {"positive_k16384", "normal_k16384"}


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


def blocked_float32_accumulation(weight, bias):
    # The same blocks of 64, summed in float32 and rounded once: another order, the right precision.
    def forward(x):
        ct = torch.promote_types(x.dtype, torch.float32)
        acc = None
        for k in range(0, x.shape[-1], 64):
            part = F.linear(x[..., k:k + 64].to(ct), weight[:, k:k + 64].to(ct))
            acc = part if acc is None else acc + part
        if bias is not None:
            acc = acc + bias.to(ct)
        return acc.to(x.dtype)

    return forward


def float32_rounded_once(weight, bias):
    # Half types computed in float32 and rounded once at the end (float64 stays float64).
    def forward(x):
        ct = torch.promote_types(x.dtype, torch.float32)
        y = F.linear(x.to(ct), weight.to(ct), None if bias is None else bias.to(ct))
        return y.to(x.dtype)

    return forward


def transpose_every_call(weight, bias):
    # The contiguous transposed copy made inside forward: it always sees the current weight.
    return lambda x: _add_bias(x @ weight.t().contiguous(), bias)


CORRECT = [reversed_summation, tensordot, float64_then_cast, chunked_sum, blocked_float32_accumulation,
           float32_rounded_once, transpose_every_call]


@pytest.mark.parametrize("factory", CORRECT, ids=lambda f: f.__name__)
def test_correct_variant_passes_every_check(planted, factory):
    rec = planted(f"variant_{factory.__name__}", factory)
    results = _all_results(rec)
    failed = [f"{r.case}/{r.dtype}/{r.check}: {r.reason}" for r in results if r.status != "pass"]
    assert not failed, failed[:5]
    assert {r.dtype for r in results} == set(checks.DTYPES)


def test_exception_is_a_failed_case_not_a_crash(planted):
    def raises(weight, bias):
        def forward(x):
            raise ValueError("boom")
        return forward

    rec = planted("planted_raises", raises)
    results = _all_results(rec)
    assert all(r.status == "fail" and "raised ValueError: boom" in r.reason for r in results)
    assert len(results) == len(list(checks.iter_checks(rec, ["cpu"])))


def test_factory_error_is_a_failed_case(planted):
    def bad_factory(weight, bias):
        raise RuntimeError("cannot build")

    rec = planted("planted_bad_factory", bad_factory)
    res = checks.run_check(rec, checks.CASES[0], "float32", "cpu", "forward")
    assert res.status == "fail" and "cannot build" in res.reason


def test_tolerance_scales_with_k_and_dtype():
    ones = torch.ones(1, dtype=torch.float64)
    assert checks.tolerance(ones, 0.0, 1024, "float32") > checks.tolerance(ones, 0.0, 16, "float32")
    assert checks.tolerance(ones, 0.0, 16, "bfloat16") > checks.tolerance(ones, 0.0, 16, "float32")
    # float32's tolerance at modest K is far below TF32's unit roundoff.
    assert checks.tolerance(ones, 0.0, 16, "float32") < 2.0**-11 / 10
