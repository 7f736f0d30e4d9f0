"""Correctness checks: every implementation against a float64 reference on the CPU.

Nothing is timed before it passes here.  A check case fixes the input's batch
shape, in/out features, bias or not, memory layout and data; each case is run
in every dtype on every device, as a ``forward`` check (inference, no autograd)
and a ``backward`` check (dX, dW, db against float64 autograd).

Tolerances (the one table, ``ROUNDOFF`` / ``ACCUMULATION`` / ``C_*`` below) follow
the standard forward error bound of a dot product of length K,

    |ŷ - y| <= C_OUT·u·(|x|·|Wᵀ| + |b|)  +  C_ACC·K·u_acc·(|x|·|Wᵀ|)

with u the unit roundoff of the dtype (the output's and the inputs' rounding) and
u_acc that of the precision a correct implementation accumulates in.  PyTorch
accumulates bfloat16/float16 GEMMs and sums in float32, so u_acc is float32's for
them: an implementation that accumulates in the low precision itself fails, and so
do float32 results computed at TF32 (u = 2^-11) or bfloat16 precision, while any
summation order in the right precision stays within K·u_acc.

That bound is a worst case, and an implementation can be several times less accurate
than PyTorch and still sit under it.  So every output and gradient is also compared
with torch's own ``F.linear`` (and its autograd) on the same inputs, dtype and device,
as PyTorch's compiler benchmarks judge accuracy (``torch._dynamo.utils.same``): the
implementation's error against float64, as an RMSE and as the largest element, may be
at most ``TORCH_ERROR_MULTIPLE`` times torch's (plus a floor of a fraction of one
rounding, for when torch's result is exact) in every sum of ``TORCH_ERROR_MIN_K`` terms
or more.  Both figures are reported.

Parameters are updated between calls, as an optimizer does (in place, under
``torch.no_grad()``), ``requires_grad`` is switched off and on, and a module is moved to
another dtype: an implementation that captured state when it was built and never sees
such changes fails.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import dropin
from .registry import Impl
from .sweep import DTYPES, Shape, dtype_of

# Unit roundoff u = 2^-p of each dtype (p = mantissa bits + 1).
ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}
# The precision a correct implementation accumulates dot products in.
ACCUMULATION = {"float64": "float64", "float32": "float32", "bfloat16": "float32", "float16": "float32"}
# Roundings of whole values: the product or GEMM output, the bias add, a cast back.
C_OUT = 4.0
# Headroom over the worst-case recursive-summation bound K·u_acc (products rounded first, as in mul_sum).
C_ACC = 2.0
# Below this the difference is noise around zero, not an error of the implementation.
ABS_FLOOR = {"float64": 1e-300, "float32": 1e-30, "bfloat16": 1e-30, "float16": 1e-6}
# How many times torch's own error against float64 an implementation's may be: (RMSE,
# largest element), per dtype; measured figures and the reasons in README "Checks".
# Half types: the built-ins and correct orders and blockings that accumulate in float32
# stay within 1.2x (RMSE) and 1.7x (largest); a tree sum kept in the half type reaches
# 2.6x, a split-K kernel whose partial sums are kept in it 6.5-7.3x.  These are the
# multiples of torch._dynamo's own accuracy check (2, and 3 for the largest element).
# float32: summation order alone moves the error up to 5.1x (x @ W.t().contiguous() at
# K=16384); float32 accumulation is the right precision there, so only far worse fails.
# float64: not applied, the float64 reference cannot measure a float64 error.
TORCH_ERROR_MULTIPLE = {"float32": (8.0, 8.0), "bfloat16": (2.0, 3.0), "float16": (2.0, 3.0)}
# Errors are compared with torch's plus this fraction of one rounding of the output
# (u·RMS of the reference), so an exact torch result does not make another order infinitely worse.
TORCH_ERROR_FLOOR = 0.25
# Sums shorter than this are left to the bound: a few roundings decide their error, and
# the RMSE of a handful of elements over another is noise (up to 2.6x for correct
# variants at K=1), not accumulation.
TORCH_ERROR_MIN_K = 32


def tolerance(abs_terms: torch.Tensor, abs_extra: torch.Tensor | float, k: int, dtype: str) -> torch.Tensor:
    """Elementwise bound for a sum of k products whose absolute values sum to ``abs_terms``."""
    u = ROUNDOFF[dtype]
    u_acc = ROUNDOFF[ACCUMULATION[dtype]]
    # In one new tensor: a weight gradient's bound has as many elements as the weight.
    tol = abs_terms * (C_OUT * u + C_ACC * max(k, 1) * u_acc)
    if isinstance(abs_extra, torch.Tensor):
        tol.add_(abs_extra, alpha=C_OUT * u)
    elif abs_extra:
        tol.add_(C_OUT * u * abs_extra)
    return tol.add_(ABS_FLOOR[dtype])


@dataclass(frozen=True)
class CheckCase:
    """One input configuration of the checks: a sweep shape, bias or not, layout and data."""

    id: str
    shape: Shape
    bias: bool = True
    layout: str = "contiguous"  # "contiguous", "transposed" (rank >= 2) or "strided"
    data: str = "normal"  # "normal" (zero mean) or "positive" (sums grow: exposes low-precision accumulation)


CASES: tuple[CheckCase, ...] = (
    CheckCase("rank1", Shape((), 16, 8)),
    CheckCase("rank2", Shape((5,), 16, 8)),
    CheckCase("rank2_nobias", Shape((5,), 16, 8), bias=False),
    CheckCase("rank3", Shape((2, 3), 32, 24)),
    CheckCase("rank3_nobias", Shape((2, 3), 32, 24), bias=False),
    CheckCase("rank4", Shape((2, 2, 3), 16, 8)),
    CheckCase("empty_batch", Shape((0,), 16, 8)),
    CheckCase("empty_batch_rank3", Shape((2, 0), 16, 8)),
    CheckCase("in_features_1", Shape((4,), 1, 8)),
    CheckCase("out_features_1", Shape((4,), 16, 1)),
    CheckCase("square", Shape((6,), 12, 12)),
    CheckCase("noncontiguous_transposed", Shape((6,), 16, 8), layout="transposed"),
    CheckCase("noncontiguous_strided", Shape((2, 3), 16, 8), layout="strided"),
    CheckCase("positive_k16", Shape((8,), 16, 8), data="positive"),
    CheckCase("positive_k256", Shape((8,), 256, 16), data="positive"),
    # Long sums, where an accumulation in the low precision loses most against torch's:
    # growing (all positive) and zero-mean.
    CheckCase("positive_k16384", Shape((2,), 16384, 16), data="positive"),
    CheckCase("normal_k16384", Shape((2,), 16384, 16)),
    CheckCase("wide_k1024", Shape((4,), 1024, 8)),
)


def case_for_shape(shape: Shape, bias: bool = True) -> CheckCase:
    """The check case of a sweep shape: the benchmark's own inputs are checked before timing."""
    return CheckCase(f"sweep_{shape.id}", shape, bias=bias)


@dataclass
class CheckResult:
    """One check outcome: what ``linbench check --json`` prints per row."""

    impl: str
    check: str  # "forward" or "backward"
    case: str
    shape: list[int]
    in_features: int
    out_features: int
    bias: bool
    dtype: str
    device: str
    status: str  # "pass", "fail" or "skip"
    reason: str = ""
    max_error_ratio: float | None = None  # worst |err| / tolerance over everything compared
    # Worst error against float64 over torch's own F.linear's on the same inputs, over every
    # output and gradient compared: as an RMSE, and as the largest element.
    torch_error_ratio: float | None = None
    torch_error_ratio_max: float | None = None

    @classmethod
    def of(cls, impl: str, case: CheckCase, dtype: str, device: str, check: str, status: str,
           reason: str = "") -> CheckResult:
        """A result for ``case`` before (or instead of) running it."""
        return cls(impl=impl, check=check, case=case.id, shape=list(case.shape.input_shape),
                   in_features=case.shape.in_features, out_features=case.shape.out_features, bias=case.bias,
                   dtype=dtype, device=device, status=status, reason=reason)

    def to_dict(self) -> dict:
        return asdict(self)


class CheckFailure(Exception):
    """A check that did not hold; the message is the reason shown to users."""


# --- inputs ------------------------------------------------------------------------------


def _seed(*parts: object) -> int:
    # Stable across processes (unlike hash()), so a failure reproduces.
    h = 1469598103934665603
    for ch in "|".join(map(str, parts)).encode():
        h = ((h ^ ch) * 1099511628211) % 2**63
    return h


def _sample(gen: torch.Generator, shape: tuple[int, ...], data: str, scale: float = 1.0) -> torch.Tensor:
    if data == "positive":
        return torch.rand(shape, generator=gen, dtype=torch.float64) * scale
    return torch.randn(shape, generator=gen, dtype=torch.float64) * scale


def _layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """A tensor equal to ``t`` in the requested memory layout (a view, never contiguous)."""
    if layout == "contiguous" or t.dim() == 0:
        return t
    if layout == "transposed" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    # strided: every other element of a twice-as-wide buffer
    wide = torch.zeros((*t.shape[:-1], 2 * t.shape[-1]), dtype=t.dtype, device=t.device)
    wide[..., ::2] = t
    return wide[..., ::2]


@dataclass
class _Inputs:
    x64: list[torch.Tensor]  # float64 reference copies of the dtype-rounded inputs
    w64: torch.Tensor
    b64: torch.Tensor | None
    gy64: list[torch.Tensor]


def _make_inputs(case: CheckCase, dtype: str, n_inputs: int) -> _Inputs:
    gen = torch.Generator().manual_seed(_seed(case.id, dtype))
    td = dtype_of(dtype)
    # Weights scaled by 1/sqrt(in) keep outputs O(1) in every dtype (float16 range).
    scale = 1.0 / math.sqrt(case.shape.in_features) if case.data == "normal" else 1.0 / case.shape.in_features

    def rounded(t):
        return t.to(td).to(torch.float64)

    w = rounded(_sample(gen, (case.shape.out_features, case.shape.in_features), case.data, scale))
    b = rounded(_sample(gen, (case.shape.out_features,), case.data)) if case.bias else None
    xs = [rounded(_sample(gen, case.shape.input_shape, case.data)) for _ in range(n_inputs)]
    gys = [rounded(_sample(gen, (*case.shape.batch, case.shape.out_features), "normal")) for _ in range(n_inputs)]
    return _Inputs(xs, w, b, gys)


# --- comparisons ---------------------------------------------------------------------------


def _expect_tensor(what: str, got: object, shape: tuple[int, ...], dtype: torch.dtype, device: str) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise CheckFailure(f"{what} is {type(got).__name__}, not a tensor")
    if tuple(got.shape) != tuple(shape):
        raise CheckFailure(f"{what} has shape {list(got.shape)}, expected {list(shape)}")
    if got.dtype != dtype:
        raise CheckFailure(f"{what} has dtype {str(got.dtype).removeprefix('torch.')}, "
                          f"expected {str(dtype).removeprefix('torch.')}")
    if got.device.type != torch.device(device).type:
        raise CheckFailure(f"{what} is on {got.device}, expected {device}")
    return got


@dataclass
class _Worst:
    """The worst figures over everything a check compared."""

    bound: float = 0.0  # |err| / tolerance
    rmse: float | None = None  # RMSE over torch's own (None: nothing compared with torch)
    max: float | None = None  # largest |err| over torch's own

    def add(self, other: _Worst) -> None:
        self.bound = max(self.bound, other.bound)
        if other.rmse is not None:
            self.rmse = other.rmse if self.rmse is None else max(self.rmse, other.rmse)
            self.max = other.max if self.max is None else max(self.max, other.max)


def _ratio(err: float, allowed: float) -> float:
    if allowed > 0:
        return err / allowed
    return 0.0 if err == 0 else math.inf


def _rms(t: torch.Tensor) -> float:
    """The root mean square of a float64 tensor, without a squared copy of it."""
    flat = t.reshape(-1)
    return math.sqrt(float(torch.dot(flat, flat)) / flat.numel())


def _compare(what: str, got: torch.Tensor, ref: torch.Tensor, tol: torch.Tensor,
             torch_got: torch.Tensor | None = None, dtype: str | None = None, k: int = 0) -> _Worst:
    """The error of ``got`` against the float64 ``ref``: within ``tol`` everywhere, and (with
    ``torch_got``, torch's own result, for sums of ``k`` >= TORCH_ERROR_MIN_K terms) within
    TORCH_ERROR_MULTIPLE of torch's error; raises CheckFailure saying which and where."""
    if ref.numel() == 0:
        return _Worst()
    g = got.detach().to("cpu", torch.float64)
    if not torch.isfinite(g).all():
        bad = (~torch.isfinite(g)).nonzero()[0].tolist()
        raise CheckFailure(f"{what} has a non-finite value {g[tuple(bad)].item()} at index {bad}")
    # Each pass over the elements makes as few new tensors as it can: the checks of a 4096x4096
    # layer compare 16M-element gradients, and every temporary is another 128 MiB written.
    err = g.sub(ref).abs_()
    ratio = err / tol
    worst = _Worst(bound=float(ratio.max()))
    if worst.bound > 1.0:
        idx = tuple(torch.nonzero(ratio == ratio.max())[0].tolist())
        raise CheckFailure(
            f"{what} off by {float(err[idx]):.3g} at index {list(idx)} "
            f"(got {float(g[idx]):.6g}, expected {float(ref[idx]):.6g}); "
            f"tolerance {float(tol[idx]):.3g}, {worst.bound:.3g}x over"
        )
    if torch_got is None or dtype not in TORCH_ERROR_MULTIPLE or k < TORCH_ERROR_MIN_K:
        return worst
    del ratio
    err_t = torch_got.detach().to("cpu", torch.float64).sub(ref).abs_()
    u = ROUNDOFF[dtype] * TORCH_ERROR_FLOOR
    rmse, rmse_t = _rms(err), _rms(err_t)
    big, big_t = float(err.max()), float(err_t.max())
    low, high = torch.aminmax(ref)
    worst.rmse = _ratio(rmse, rmse_t + u * _rms(ref))
    worst.max = _ratio(big, big_t + u * max(-float(low), float(high)))
    m_rmse, m_max = TORCH_ERROR_MULTIPLE[dtype]
    if worst.rmse > m_rmse or worst.max > m_max:  # both set just above
        which = f"RMSE {worst.rmse:.3g}x" if worst.rmse > m_rmse else f"largest error {worst.max:.3g}x"
        raise CheckFailure(
            f"{what}: {which} torch's own (F.linear) on the same inputs, over the "
            f"{m_rmse if worst.rmse > m_rmse else m_max:g}x allowed in {dtype} "
            f"(RMSE {rmse:.3g} against torch's {rmse_t:.3g}; largest {big:.3g} against {big_t:.3g})"
        )
    return worst


def _unchanged(what: str, tensor: torch.Tensor, before: torch.Tensor) -> None:
    if not torch.equal(tensor.detach(), before):
        raise CheckFailure(f"{what} was modified in place by the implementation")


# --- running ---------------------------------------------------------------------------------


def _prepare(case: CheckCase, dtype: str, device: str, inputs: _Inputs, requires_grad: bool):
    td = dtype_of(dtype)
    # clone(): .to() returns the very tensor when nothing changes (float64 on the CPU),
    # and the float64 reference must not share storage with what the implementation gets.
    weight = nn.Parameter(inputs.w64.to(device, td).clone(), requires_grad=requires_grad)
    bias = None if inputs.b64 is None else nn.Parameter(inputs.b64.to(device, td).clone(), requires_grad=requires_grad)
    return weight, bias


def _forward_reference(x64, w64, b64):
    y = x64 @ w64.T
    return y if b64 is None else y + b64


def run_check(impl: Impl, case: CheckCase, dtype: str, device: str, check: str, n_inputs: int = 3,
              changing_parameters: bool = True) -> CheckResult:
    """Run one check; every exception from the implementation becomes a failed result.

    ``changing_parameters=False`` leaves out the calls after the parameters are updated,
    frozen or moved: what they catch does not depend on the shape, so the benchmarks'
    check of their own (large) shapes skips them, while ``linbench check`` runs them.
    """
    result = CheckResult.of(impl.name, case, dtype, device, check, "pass")
    if dropin.is_dropin(check):
        result.status, result.reason = dropin.run(impl, check)
        return result
    limit = impl.limits.excludes(dtype=dtype, device=device, rank=len(case.shape.input_shape), bias=case.bias) \
        or impl.unavailable(device)
    if limit:
        result.status, result.reason = "skip", limit
        return result
    try:
        if check == "forward":
            worst = _check_forward(impl, case, dtype, device, n_inputs, changing_parameters)
        elif check == "backward":
            worst = _check_backward(impl, case, dtype, device, n_inputs, changing_parameters)
        else:
            raise ValueError(f"unknown check {check!r}")
        result.max_error_ratio = worst.bound
        result.torch_error_ratio, result.torch_error_ratio_max = worst.rmse, worst.max
    except CheckFailure as exc:
        result.status, result.reason = "fail", str(exc)
    except torch.OutOfMemoryError as exc:
        # The GPU is too small for the case, which says nothing about the implementation:
        # n/a with the reason, as a case over a sweep's memory budget is.  (On the CPU
        # torch raises a RuntimeError, which stays a failure: --memory-limit's own verdict.)
        result.status = "skip"
        result.reason = f"out of {device} memory: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
        if device == "cuda":
            torch.cuda.empty_cache()
    except Exception as exc:  # the implementation raised: report it, never crash the run
        result.status = "fail"
        result.reason = _exception_reason(exc)
    return result


def _exception_reason(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (MemoryError,)) or "out of memory" in msg.lower() or "can't allocate memory" in msg.lower():
        return f"out of memory: {type(exc).__name__}: {msg}"
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})" if frame else ""
    return f"raised {type(exc).__name__}: {msg}{where}"


@dataclass
class _Subject:
    """One implementation built on a check case's parameters, with what its checks compare to."""

    case: CheckCase
    dtype: str
    device: str
    inputs: _Inputs
    weight: torch.Tensor
    bias: torch.Tensor | None
    forward: object
    before: list[tuple[str, torch.Tensor, torch.Tensor]]  # (name, parameter, its copy)

    @classmethod
    def build(cls, impl: Impl, case: CheckCase, dtype: str, device: str, n_inputs: int, requires_grad: bool):
        inputs = _make_inputs(case, dtype, n_inputs)
        weight, bias = _prepare(case, dtype, device, inputs, requires_grad=requires_grad)
        s = cls(case, dtype, device, inputs, weight, bias, impl.build(weight, bias), [])
        s.remember_parameters()
        return s

    def remember_parameters(self) -> None:
        """What the parameters hold now, as the float64 reference and as copies to check against."""
        self.before = [("weight", self.weight, self.weight.detach().clone())]
        self.inputs.w64 = self.weight.detach().to("cpu", torch.float64)
        if self.bias is not None:
            self.before.append(("bias", self.bias, self.bias.detach().clone()))
            self.inputs.b64 = self.bias.detach().to("cpu", torch.float64)

    def input(self, i: int, requires_grad: bool = False) -> torch.Tensor:
        x = _layout(self.inputs.x64[i].to(self.device, dtype_of(self.dtype)).clone(), self.case.layout)
        return x.requires_grad_(requires_grad)

    def torch_linear(self, x: torch.Tensor) -> torch.Tensor:
        """torch's own F.linear on the same inputs and parameters: the error to compare with."""
        with torch.no_grad():
            return F.linear(x.detach(), self.weight.detach(), None if self.bias is None else self.bias.detach())

    def check_output(self, i: int, y: object, x: torch.Tensor, what: str | None = None) -> _Worst:
        """Shape, dtype, device and values of the output for input #i; the worst error figures."""
        td = dtype_of(self.dtype)
        what = what or f"output for input #{i + 1}"
        _expect_tensor(what, y, (*self.case.shape.batch, self.case.shape.out_features), td, self.device)
        x64, w64, b64 = self.inputs.x64[i], self.inputs.w64, self.inputs.b64
        tol = tolerance(x64.abs() @ w64.abs().T, 0.0 if b64 is None else b64.abs(), self.case.shape.in_features,
                        self.dtype)
        return _compare(what, y, _forward_reference(x64, w64, b64), tol, self.torch_linear(x), self.dtype,
                        self.case.shape.in_features)

    def check_parameters_unchanged(self) -> None:
        for name, tensor, copy in self.before:
            _unchanged(name, tensor, copy)

    def optimizer_step(self, step: int) -> None:
        """Change the parameters in place, as ``optimizer.step()`` does, and make them the new reference."""
        gen = torch.Generator().manual_seed(_seed(self.case.id, self.dtype, "step", step))
        td = dtype_of(self.dtype)
        with torch.no_grad():
            for p in (self.weight, self.bias):
                if p is not None:
                    # As large as the values themselves: an implementation that kept the
                    # old ones is off by far more than any tolerance.
                    scale = float(p.detach().abs().mean().to(torch.float64)) or 1.0
                    p.add_(_sample(gen, tuple(p.shape), self.case.data, scale).to(p.device, td))
        self.remember_parameters()


def _check_forward(impl: Impl, case: CheckCase, dtype: str, device: str, n_inputs: int,
                   changing_parameters: bool = True) -> _Worst:
    s = _Subject.build(impl, case, dtype, device, n_inputs, requires_grad=False)
    worst = _Worst()
    # Several different inputs through the same forward: catches cached outputs.
    for i in range(n_inputs):
        x = s.input(i)
        x_before = x.clone()
        with torch.no_grad():
            y = s.forward(x)
        worst.add(s.check_output(i, y, x))
        _unchanged(f"input x (call #{i + 1})", x, x_before)
    s.check_parameters_unchanged()
    if not changing_parameters:
        return worst
    # Serving a model whose parameters were updated (or loaded) in place: the next call sees them.
    s.optimizer_step(1)
    x = s.input(0)
    with torch.no_grad():
        y = s.forward(x)
    worst.add(s.check_output(0, y, x, "output after the parameters were updated in place"))
    if isinstance(s.forward, nn.Module):
        worst.add(_check_module_to(s))
    return worst


def _check_module_to(s: _Subject) -> _Worst:
    """A module moved to another dtype with ``.to()`` computes in it, from its converted parameters."""
    other = "float32" if s.dtype == "float64" else "float64"
    s.forward.to(dtype_of(other))
    moved = _Subject(s.case, other, s.device, s.inputs, s.weight, s.bias, s.forward, [])
    moved.remember_parameters()
    x = moved.input(0)
    with torch.no_grad():
        y = moved.forward(x)
    worst = moved.check_output(0, y, x, f"output after module.to({other})")
    # Checked against torch there too, but the figures reported are the case's own dtype's.
    return _Worst(bound=worst.bound)


def _check_backward(impl: Impl, case: CheckCase, dtype: str, device: str, n_inputs: int,
                    changing_parameters: bool = True) -> _Worst:
    s = _Subject.build(impl, case, dtype, device, n_inputs, requires_grad=True)
    worst = _Worst()
    for i in range(n_inputs):
        worst.add(_backward_call(s, i, f"input #{i + 1}"))
    s.check_parameters_unchanged()
    if not changing_parameters:
        return worst
    # A training loop: the optimizer updates the parameters in place between steps, and
    # the next step's output and gradients follow the new values.
    s.optimizer_step(1)
    worst.add(_backward_call(s, 0, "the step after an in-place update"))
    # Freezing and unfreezing the parameters (fine-tuning): gradients flow to x alone, then to all again.
    for p in (s.weight, s.bias):
        if p is not None:
            p.requires_grad_(False)
    worst.add(_backward_call(s, min(1, n_inputs - 1), "frozen parameters", frozen=True))
    for p in (s.weight, s.bias):
        if p is not None:
            p.requires_grad_(True)
    s.optimizer_step(2)
    worst.add(_backward_call(s, 0, "unfrozen parameters after another update"))
    return worst


def _backward_call(s: _Subject, i: int, label: str, frozen: bool = False) -> _Worst:
    """One forward and backward on input #i; checks the output and every gradient against
    float64 and against torch's own autograd of F.linear."""
    case, dtype, device = s.case, s.dtype, s.device
    td = dtype_of(dtype)
    x64, gy64 = s.inputs.x64[i], s.inputs.gy64[i]
    x = s.input(i, requires_grad=True)
    x_before = x.detach().clone()
    y = s.forward(x)
    worst = _Worst()
    worst.add(s.check_output(i, y, x, f"output for {label}"))
    if not y.requires_grad:
        raise CheckFailure("output does not require grad: the graph to x, weight and bias is cut")
    params = [] if frozen else [s.weight] + ([s.bias] if s.bias is not None else [])
    targets = [x, *params]
    gy = gy64.to(device, td).clone()
    grads = torch.autograd.grad(y, targets, grad_outputs=gy, allow_unused=True)
    names = ["grad of x", "grad of weight", "grad of bias"]
    for name, g in zip(names, grads, strict=False):  # no bias (or frozen): fewer grads
        if g is None:
            raise CheckFailure(f"{name} is None ({label}): the implementation does not propagate to it "
                              "(a detached or copied parameter?)")
    # torch's own gradients on the same inputs, for the relative criterion.
    xt = x.detach().clone().requires_grad_(True)
    wt = s.weight.detach().clone().requires_grad_(not frozen)
    bt = None if s.bias is None else s.bias.detach().clone().requires_grad_(not frozen)
    yt = F.linear(xt, wt, bt)
    torch_grads = torch.autograd.grad(yt, [xt] + ([] if frozen else [wt] + ([bt] if bt is not None else [])),
                                      grad_outputs=gy)
    x2 = x64.reshape(-1, case.shape.in_features)
    gy2 = gy64.reshape(-1, case.shape.out_features)
    # Reference gradients of y = x Wᵀ + b, each with the length of its own sum.
    checks = [("grad of x", gy64 @ s.inputs.w64, gy64.abs() @ s.inputs.w64.abs(), case.shape.out_features, x.shape)]
    if not frozen:
        checks.append(("grad of weight", gy2.T @ x2, gy2.abs().T @ x2.abs(), case.shape.rows, s.weight.shape))
        if s.bias is not None:
            checks.append(("grad of bias", gy2.sum(0), gy2.abs().sum(0), case.shape.rows, s.bias.shape))
    for (name, ref, abs_terms, k, shape), g, gt in zip(checks, grads, torch_grads, strict=True):
        what = f"{name} for {label}"
        _expect_tensor(what, g, tuple(shape), td, device)
        worst.add(_compare(what, g, ref, tolerance(abs_terms, 0.0, k, dtype), gt, dtype, k))
    _unchanged(f"input x (the call for {label})", x, x_before)
    return worst


CHECKS = ("forward", "backward")
# The drop-in checks' row: they build the module themselves (dropin.LAYOUT_SHAPES and
# INIT_SHAPE); this names the first layout they use, in the module's default dtype.
DROPIN_CASE = CheckCase("module", Shape((5,), *dropin.LAYOUT_SHAPES[0]))


def iter_checks(impl: Impl, devices: list[str], dtypes: tuple[str, ...] = DTYPES,
                cases: tuple[CheckCase, ...] = CASES) -> Iterator[tuple[CheckCase, str, str, str]]:
    """Every (case, dtype, device, check) the checks run for one implementation: the output
    checks, then, for a module implementation checked on the CPU, the drop-in checks."""
    for device in devices:
        for dtype in dtypes:
            for case in cases:
                for check in CHECKS:
                    yield case, dtype, device, check
    if impl.module is not None and "cpu" in devices:
        for check in dropin.CHECKS:
            yield DROPIN_CASE, "float32", "cpu", check


def run_all(impl: Impl, devices: list[str], dtypes: tuple[str, ...] = DTYPES) -> list[CheckResult]:
    return [run_check(impl, case, dtype, device, check)
            for case, dtype, device, check in iter_checks(impl, devices, dtypes)]
