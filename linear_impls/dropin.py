"""Drop-in checks: is a module implementation a replacement for ``nn.Linear``, beyond its outputs?

A hand-written layer can compute the right outputs for given weights and still not be
one: a checkpoint of nn.Linear does not load into it (a transposed ``(in, out)`` weight,
a bias under another key), or loads with no error and computes something else (a
transposed weight at in == out: ``load_state_dict`` checks shapes, not meaning), or it
starts training from weights of another scale (``torch.randn`` is ~sqrt(3·in) times
nn.Linear's U(-1/sqrt(in), 1/sqrt(in))).  Each check here builds the class as a user
would, ``cls(in_features, out_features, bias=...)``, and compares it with nn.Linear:

* ``dropin_state_dict``: keys, shapes and dtypes of ``state_dict()`` with and without
  bias; ``load_state_dict(strict=True)`` of nn.Linear's state into it and of its state
  into nn.Linear, with equal outputs after each, at in != out and at in == out;
* ``dropin_init``: weight and bias inside ±1/sqrt(in) and drawn from that uniform
  distribution (a Kolmogorov-Smirnov test at ``KS_ALPHA``, on ``INIT_SHAPE``, at seed
  ``INIT_SEED``), and ``reset_parameters()`` a fresh draw from it;
* ``dropin_attributes``: ``in_features``, ``out_features`` and ``extra_repr()`` as nn.Linear's;
* ``dropin_portability``: ``.to(float64)``, ``.half()``, ``copy.deepcopy``, and
  ``torch.save``/``torch.load`` (its state_dict with ``weights_only=True``, the whole
  module pickled) leave it computing what it computed.

They are checks of their own: they never change the verdict on the outputs.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Impl, build_module, layout_mismatch, takes_bias

CHECKS = ("dropin_state_dict", "dropin_init", "dropin_attributes", "dropin_portability")
PREFIX = "dropin_"
# (in_features, out_features) of the layout checks: an ordinary layer, and a square one,
# where a transposed weight has nn.Linear's shape and loads without an error.
LAYOUT_SHAPES = ((16, 8), (12, 12))
# The initialisation check's layer: 8192 bias values and 524288 weights.  The KS test's
# threshold at KS_ALPHA is 1.95/sqrt(n) (the bias: 0.022); a draw 10% narrower than
# U(±1/sqrt(in)) is 0.05 away in CDF, a draw 10% wider puts values past the bound.
INIT_SHAPE = (64, 8192)
INIT_SEED = 0
# Each test's false-rejection probability for a correct layer (four tests: weight and bias,
# drawn at construction and by reset_parameters()); the rate measured over seeds is in
# benchmarks/README.md ("Drop-in checks"), made by benchmarks/dropin_false_rejection.py.
KS_ALPHA = 1e-4


class DropInFailure(Exception):
    """A drop-in check that did not hold; the message is the reason shown to users."""


def is_dropin(check: str) -> bool:
    return check.startswith(PREFIX)


# --- the Kolmogorov-Smirnov test, without scipy -----------------------------------------------


def ks_uniform(values: torch.Tensor, bound: float) -> tuple[float, float]:
    """The KS statistic of ``values`` against U(-bound, bound) and its asymptotic p-value."""
    x = torch.sort(values.detach().flatten().to(torch.float64)).values
    n = x.numel()
    cdf = ((x + bound) / (2 * bound)).clamp(0.0, 1.0)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    d = max(float((i / n - cdf).max()), float((cdf - (i - 1) / n).max()))
    return d, kolmogorov_sf(d * math.sqrt(n))


def kolmogorov_sf(t: float) -> float:
    """P(sqrt(n)·D > t) in the limit of large n: 2 Σ (-1)^(k-1) exp(-2 k² t²)."""
    if t <= 0:
        return 1.0
    if t < 0.2:  # the series converges slowly here, and the probability is 1 to 1e-100
        return 1.0
    return max(0.0, min(1.0, 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * t * t) for k in range(1, 101))))


def _check_uniform(what: str, values: torch.Tensor, bound: float) -> None:
    """Every value within ±bound and drawn from U(-bound, bound); the reason says by how far not."""
    v = values.detach().to(torch.float64).flatten()
    expected_std = bound / math.sqrt(3)
    scale = float(v.std()) / expected_std if expected_std > 0 else math.inf
    outside = int((v.abs() > bound * (1 + 1e-6)).sum())
    if outside:
        raise DropInFailure(
            f"{what}: {outside} of {v.numel()} values outside nn.Linear's ±1/sqrt(in_features) = ±{bound:.4g} "
            f"(largest |value| {float(v.abs().max()):.3g}); its spread is {scale:.3g}x nn.Linear's")
    d, p = ks_uniform(v, bound)
    if p < KS_ALPHA:
        raise DropInFailure(
            f"{what}: not drawn from U(±1/sqrt(in_features)) as nn.Linear's is (Kolmogorov-Smirnov D = {d:.3g}, "
            f"p = {p:.2g} < {KS_ALPHA:g} over {v.numel()} values); its spread is {scale:.3g}x nn.Linear's")


# --- the checks ---------------------------------------------------------------------------------


def _inputs(in_features: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1234 + in_features)
    return torch.randn(5, in_features, generator=gen).to(dtype)


# Two ways of computing one small layer in float16 may round a few outputs differently.
HALF_TOLERANCE = {"rtol": 4e-3, "atol": 1e-3}


def _outputs_equal(what: str, got: torch.Tensor, expected: torch.Tensor, exact: bool = False) -> None:
    try:
        if exact:
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
        elif got.dtype == torch.float16:
            torch.testing.assert_close(got, expected, **HALF_TOLERANCE)
        else:
            torch.testing.assert_close(got, expected)
    except AssertionError as exc:
        lines = str(exc).splitlines()
        first = next((ln.strip() for ln in lines if "Greatest absolute" in ln), lines[0])
        raise DropInFailure(f"{what}: outputs differ ({first})") from None


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def check_state_dict(cls: type) -> str:
    """Keys, shapes and dtypes as nn.Linear's; strict loads both ways with equal outputs, at each
    of ``LAYOUT_SHAPES``: what fails at each is reported (a transposed weight fails on its shape
    at in != out, and at in == out loads and computes something else)."""
    failures = []
    for in_f, out_f in LAYOUT_SHAPES:
        try:
            for bias in (True, False) if takes_bias(cls) else (True,):
                _state_dict_round_trip(cls, in_f, out_f, bias)
        except DropInFailure as exc:
            failures.append(str(exc))
    if failures:
        raise DropInFailure("; ".join(failures))
    return ("keys, shapes, dtypes and strict loads both ways as nn.Linear's at "
            + ", ".join(f"{i}x{o}" for i, o in LAYOUT_SHAPES))


def _state_dict_round_trip(cls: type, in_f: int, out_f: int, bias: bool) -> None:
    where = f"in_features={in_f}, out_features={out_f}, bias={bias}"
    mine = _seeded(1, lambda: build_module(cls, in_f, out_f, bias))
    ref = _seeded(2, lambda: nn.Linear(in_f, out_f, bias=bias))
    wrong = layout_mismatch(mine, in_f, out_f, bias)
    if wrong:
        raise DropInFailure(f"{wrong} ({where})" if "bias=" not in wrong else wrong)
    for key, t in mine.state_dict().items():
        want = ref.state_dict()[key].dtype
        if t.dtype != want:
            raise DropInFailure(f"state_dict[{key!r}] is {_name(t.dtype)}, nn.Linear's is {_name(want)} ({where})")
    x = _inputs(in_f)
    _load_and_compare(mine, ref, x, f"load_state_dict(nn.Linear's state_dict, strict=True) ({where})",
                      f"after loading nn.Linear's state_dict ({where}), against that nn.Linear")
    fresh = _seeded(3, lambda: build_module(cls, in_f, out_f, bias))
    _load_and_compare(nn.Linear(in_f, out_f, bias=bias), fresh, x,
                      f"nn.Linear.load_state_dict(its state_dict, strict=True) ({where})",
                      f"nn.Linear loaded from its state_dict ({where}), against it")


def _load_and_compare(dst: nn.Module, src: nn.Module, x: torch.Tensor, load: str, compare: str) -> None:
    """``dst.load_state_dict(src.state_dict(), strict=True)``, then both give the same outputs on ``x``."""
    try:
        dst.load_state_dict(src.state_dict(), strict=True)
    except Exception as exc:
        raise DropInFailure(f"{load} failed: {_first_line(exc)}") from None
    with torch.no_grad():
        _outputs_equal(compare, dst(x), src(x))


def check_init(cls: type, seed: int = INIT_SEED) -> str:
    """Weight and bias drawn from U(±1/sqrt(in)), and ``reset_parameters()`` a fresh draw
    (``seed``: the global RNG's seed for the build; the reset draws with the next one)."""
    in_f, out_f = INIT_SHAPE
    bound = 1.0 / math.sqrt(in_f)
    layer = _seeded(seed, lambda: build_module(cls, in_f, out_f, True))
    state = layer.state_dict()
    for key in ("weight", "bias"):
        if key not in state:
            raise DropInFailure(f"no state_dict[{key!r}] to look at (see dropin_state_dict)")
        _check_uniform(f"{key} as built", state[key], bound)
    reset = getattr(layer, "reset_parameters", None)
    if not callable(reset):
        raise DropInFailure("no reset_parameters(): nn.Linear's re-draws its weight and bias with it")
    before = {k: v.detach().clone() for k, v in state.items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        with torch.no_grad():
            reset()
    for key in ("weight", "bias"):
        after = layer.state_dict()[key]
        if torch.equal(after, before[key]):
            raise DropInFailure(f"reset_parameters() left {key} as it was: nn.Linear's draws it afresh")
        _check_uniform(f"{key} after reset_parameters()", after, bound)
    return f"weight and bias within ±1/sqrt(in) and uniform (KS p >= {KS_ALPHA:g}), also after reset_parameters()"


def check_attributes(cls: type) -> str:
    """``in_features``, ``out_features`` and ``extra_repr()`` as nn.Linear's."""
    for in_f, out_f in LAYOUT_SHAPES[:1]:
        for bias in (True, False) if takes_bias(cls) else (True,):
            mine, ref = build_module(cls, in_f, out_f, bias), nn.Linear(in_f, out_f, bias=bias, device="meta")
            for attr in ("in_features", "out_features"):
                got = getattr(mine, attr, None)
                if got != getattr(ref, attr):
                    raise DropInFailure(f"{attr} is {got!r}, nn.Linear's is {getattr(ref, attr)!r} "
                                        "(code that reads layer.in_features breaks)")
            if mine.extra_repr() != ref.extra_repr():
                raise DropInFailure(f"extra_repr() is {mine.extra_repr()!r}, nn.Linear's is {ref.extra_repr()!r} "
                                    "(print(model) shows it)")
    return "in_features, out_features and extra_repr() as nn.Linear's"


def check_portability(cls: type) -> str:
    """``.to(float64)``, ``.half()``, ``deepcopy`` and ``torch.save``/``torch.load`` keep it working."""
    in_f, out_f = LAYOUT_SHAPES[0]
    layer = _seeded(4, lambda: build_module(cls, in_f, out_f, True))
    x = _inputs(in_f)
    with torch.no_grad():
        y = layer(x)
        _outputs_equal("as built, against F.linear on its state_dict", y, _reference(layer.state_dict(), x))
        for label, convert, dtype in (("module.to(torch.float64)", lambda m: m.to(torch.float64), torch.float64),
                                      ("module.half()", lambda m: m.half(), torch.float16)):
            moved = convert(copy.deepcopy(layer))
            for key, t in moved.state_dict().items():
                if t.dtype != dtype:
                    raise DropInFailure(f"after {label}, state_dict[{key!r}] is still {_name(t.dtype)}")
            got = moved(x.to(dtype))
            if got.dtype != dtype:
                raise DropInFailure(f"after {label}, the output is {_name(got.dtype)}, not {_name(dtype)}")
            _outputs_equal(f"after {label}", got, _reference(moved.state_dict(), x.to(dtype)))
        twin = copy.deepcopy(layer)
        _outputs_equal("copy.deepcopy(module)", twin(x), y, exact=True)
        for p in twin.parameters():
            p.add_(1.0)
        _outputs_equal("the original after its deepcopy was changed", layer(x), y, exact=True)
        buf = io.BytesIO()
        torch.save(layer.state_dict(), buf)
        buf.seek(0)
        loaded = build_module(cls, in_f, out_f, True)
        loaded.load_state_dict(torch.load(buf, weights_only=True), strict=True)
        _outputs_equal("a fresh module after torch.save(state_dict) and torch.load(weights_only=True)",
                       loaded(x), y, exact=True)
        buf = io.BytesIO()
        try:
            torch.save(layer, buf)
            buf.seek(0)
            whole = torch.load(buf, weights_only=False)
        except Exception as exc:
            raise DropInFailure(f"torch.save(module) and torch.load: {_first_line(exc)}") from None
        _outputs_equal("after torch.save(module) and torch.load", whole(x), y, exact=True)
    return ".to(float64), .half(), deepcopy, torch.save/torch.load (state_dict and whole module)"


def _reference(state: dict, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, state["weight"], state.get("bias"))


RUNNERS: dict[str, Callable[[type], str]] = {
    "dropin_state_dict": check_state_dict,
    "dropin_init": check_init,
    "dropin_attributes": check_attributes,
    "dropin_portability": check_portability,
}


def run(impl: Impl, check: str) -> tuple[str, str]:
    """(status, reason) of one drop-in check of a module implementation; never raises."""
    if impl.module is None:
        return "skip", "not a module implementation (register_module)"
    try:
        return "pass", RUNNERS[check](impl.module)
    except DropInFailure as exc:
        return "fail", str(exc)
    except Exception as exc:  # the module raised: that is the reason it is not a drop-in
        return "fail", f"raised {type(exc).__name__}: {_first_line(exc)}"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
