"""Drop-in checks: planted module implementations that are not replacements for nn.Linear are
caught, and correct ones of several kinds pass; module registration and its failure modes.

The planted classes live at module level so that ``torch.save`` of a whole module can pickle them.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import linear_impls
from linear_impls import bench, checks, dropin, registry, sweep

# --- planted: not drop-in replacements ----------------------------------------------------------


class RandnInOut(nn.Module):
    """The article's warning: nn.Parameter(torch.randn(input_dim, output_dim)), x @ W."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_features, out_features))
        self.bias = nn.Parameter(torch.randn(out_features)) if bias else None

    def forward(self, x):
        y = x @ self.weight
        return y if self.bias is None else y + self.bias


class RandnOutIn(nn.Module):
    """The right layout, the wrong scale (the seed article's CustomLinearLayer, with a bias flag)."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.randn(out_features)) if bias else None

    def reset_parameters(self):
        with torch.no_grad():
            self.weight.normal_()

    def forward(self, x):
        return nn.functional.linear(x, self.weight, self.bias)


class Xavier(nn.Linear):
    """nn.Linear with xavier_uniform_ weights: every value inside ±1/sqrt(in), but narrower."""

    def reset_parameters(self):
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)


class BiasElsewhere(nn.Module):
    """Right arithmetic, but the bias is saved as 'b': nn.Linear's checkpoints do not load."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.weight = nn.Linear(in_features, out_features, bias=False).weight
        self.b = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x):
        y = x @ self.weight.T
        return y if self.b is None else y + self.b


class TransposedSquare(nn.Module):
    """Stores W as (in, out) and computes x @ W: at in == out nn.Linear's weight loads, silently wrong."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        bound = 1 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound)) if bias else None

    def forward(self, x):
        y = x @ self.weight
        return y if self.bias is None else y + self.bias


# --- correct ones ----------------------------------------------------------------------------------


class OwnForward(nn.Linear):
    """An nn.Linear subclass with a forward of its own."""

    def forward(self, x):
        y = torch.matmul(x, self.weight.T)
        return y if self.bias is None else y + self.bias


class HandKaiming(nn.Module):
    """Written by hand, initialised with kaiming_uniform_(a=sqrt(5)) as nn.Linear is."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1]
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, self.in_features), self.weight.T).reshape(
            *x.shape[:-1], self.out_features) if self.bias is not None else x @ self.weight.T


class DirectUniform(HandKaiming):
    """U(±1/sqrt(in)) drawn directly with torch.rand."""

    def reset_parameters(self):
        bound = 1 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.weight.copy_(torch.rand(self.weight.shape) * 2 * bound - bound)
            if self.bias is not None:
                self.bias.copy_(torch.rand(self.bias.shape) * 2 * bound - bound)


NOT_DROPIN = {
    RandnInOut: ("dropin_state_dict", "state_dict['weight'] has shape [16, 8], nn.Linear's is [8, 16]"),
    RandnOutIn: ("dropin_init", "outside nn.Linear's ±1/sqrt(in_features)"),
    Xavier: ("dropin_init", "not drawn from U(±1/sqrt(in_features))"),
    BiasElsewhere: ("dropin_state_dict", "state_dict keys ['b', 'weight'] are not nn.Linear's ['bias', 'weight']"),
    TransposedSquare: ("dropin_state_dict", "in_features=12, out_features=12"),
}
DROPIN = (OwnForward, HandKaiming, DirectUniform, nn.Linear)


@pytest.mark.parametrize("cls", list(NOT_DROPIN), ids=lambda c: c.__name__)
def test_planted_module_is_caught(cls):
    check, reason = NOT_DROPIN[cls]
    impl = registry.Impl(cls.__name__, lambda w, b: None, "planted", "planted", module=cls)
    status, got = dropin.run(impl, check)
    assert status == "fail" and reason in got, got


def test_transposed_square_loads_and_computes_something_else():
    # The case load_state_dict cannot see: the shapes match, the meaning does not.
    status, reason = dropin.run(registry.Impl("t", lambda w, b: None, "t", "t", module=TransposedSquare),
                                "dropin_state_dict")
    assert status == "fail" and "after loading nn.Linear's state_dict" in reason and "outputs differ" in reason


@pytest.mark.parametrize("cls", DROPIN, ids=lambda c: c.__name__)
@pytest.mark.parametrize("check", dropin.CHECKS)
def test_correct_module_passes(cls, check):
    status, reason = dropin.run(registry.Impl(cls.__name__, lambda w, b: None, "ok", "ok", module=cls), check)
    assert status == "pass", reason


def test_randn_scale_is_measured():
    # randn against U(±1/sqrt(64)): a spread of sqrt(3·64) = 13.9 times nn.Linear's.
    _, reason = dropin.run(linear_impls.get("custom_linear_layer"), "dropin_init")
    assert "13.9x nn.Linear's" in reason, reason


@pytest.mark.parametrize("name", ["nn_linear", "custom_parameter"])
def test_builtin_modules_are_dropin(name):
    impl = linear_impls.get(name)
    assert impl.module is not None
    assert [dropin.run(impl, c)[0] for c in dropin.CHECKS] == ["pass"] * len(dropin.CHECKS)


def test_article_layer_right_in_outputs_not_a_dropin():
    impl = linear_impls.get("custom_linear_layer")
    results = [checks.run_check(impl, case, dtype, dev, check)
               for case, dtype, dev, check in checks.iter_checks(impl, ["cpu"], ("float32",))]
    outputs = [r for r in results if not dropin.is_dropin(r.check)]
    assert all(r.status in ("pass", "skip") for r in outputs)
    # Its constructor takes no bias: the bias-less cases are skipped with that reason, never failed.
    assert {r.reason for r in outputs if r.status == "skip"} == {
        "always adds a bias (its constructor takes no bias argument)"}
    verdict = {r.check: r.status for r in results if dropin.is_dropin(r.check)}
    assert verdict == {"dropin_state_dict": "pass", "dropin_init": "fail", "dropin_attributes": "fail",
                       "dropin_portability": "pass"}
    assert "checked only" in sweep.skip_reason(impl, sweep.parse_shape("64x256x256"), "float32", "cpu", "forward",
                                              sweep.SWEEPS["default"])


def test_ks_test_tells_ten_percent_in_scale():
    # At the check's size and seed a 10% narrower draw is rejected, the right one is not.
    gen = torch.Generator().manual_seed(5)
    n = dropin.INIT_SHAPE[1]  # the bias: the smaller of the two tensors tested
    right = torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1
    assert dropin.ks_uniform(right, 1.0)[1] > dropin.KS_ALPHA
    assert dropin.ks_uniform(0.9 * right, 1.0)[1] < dropin.KS_ALPHA


def test_kolmogorov_tail_matches_known_values():
    # The Kolmogorov distribution's tail: P(K > 1.36) = 0.049, P(K > 1.95) = 0.001.
    assert dropin.kolmogorov_sf(1.36) == pytest.approx(0.0494, abs=5e-4)
    assert dropin.kolmogorov_sf(1.95) == pytest.approx(0.00099, abs=5e-5)


# --- registration ---------------------------------------------------------------------------------


@pytest.fixture
def registered():
    added = []

    def add(cls, **kw):
        linear_impls.register_module(description="planted", **kw)(cls)
        added.append(kw.get("name") or cls.__name__)
        return linear_impls.get(added[-1])

    yield add
    for name in added:
        linear_impls.unregister(name)


def test_register_module_takes_a_module_class():
    with pytest.raises(registry.RegistryError, match="nn.Module class"):
        linear_impls.register_module(description="x")(lambda w, b: None)


def test_registered_module_gets_the_check_parameters(registered):
    impl = registered(HandKaiming)
    assert impl.name == "HandKaiming" and impl.module is HandKaiming
    for case in checks.CASES:
        for check in checks.CHECKS:
            res = checks.run_check(impl, case, "float32", "cpu", check)
            assert res.status == "pass", (case.id, check, res.reason)


def test_layout_mismatch_fails_every_case_and_is_not_timed(registered):
    impl = registered(RandnInOut)
    res = checks.run_check(impl, checks.CASES[1], "float32", "cpu", "forward")
    assert res.status == "fail" and "DropInError" in res.reason and "not timed" in res.reason, res.reason
    with pytest.raises(registry.DropInError, match="nn.Linear's is"):
        bench.prepare("RandnInOut", "3x2x3", "float32", "cpu", "forward", check=False)


class WithBuffer(nn.Linear):
    """Holds a tensor of its own beside the parameters (a non-persistent buffer): it cannot be
    built on the meta device, so the factory builds it for real and moves the buffer."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("one", torch.ones(()), persistent=False)

    def forward(self, x):
        return super().forward(x) * self.one


@pytest.mark.parametrize("cls", [WithBuffer, HandKaiming], ids=lambda c: c.__name__)
def test_module_with_or_without_tensors_of_its_own_is_built_right(registered, cls):
    impl = registered(cls)
    for dtype in ("float64", "bfloat16"):
        for check in checks.CHECKS:
            res = checks.run_check(impl, checks.CASES[3], dtype, "cpu", check)
            assert res.status == "pass", (dtype, check, res.reason)
    # Built on the meta device only where nothing but its parameters would stay there.
    meta = registry._only_parameters_on_meta(registry.build_module(cls, 4, 3))
    assert meta == (cls is HandKaiming)
