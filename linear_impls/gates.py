"""Correctness gates: every implementation against a float64 reference on the CPU.

Nothing is timed before it passes here.  A gate case fixes the input's batch
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
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn

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


def tolerance(abs_terms: torch.Tensor, abs_extra: torch.Tensor | float, k: int, dtype: str) -> torch.Tensor:
    """Elementwise bound for a sum of k products whose absolute values sum to ``abs_terms``."""
    u = ROUNDOFF[dtype]
    u_acc = ROUNDOFF[ACCUMULATION[dtype]]
    return C_OUT * u * (abs_terms + abs_extra) + C_ACC * max(k, 1) * u_acc * abs_terms + ABS_FLOOR[dtype]


@dataclass(frozen=True)
class GateCase:
    """One input configuration of the gates."""

    id: str
    batch: tuple[int, ...]
    in_features: int
    out_features: int
    bias: bool = True
    layout: str = "contiguous"  # "contiguous", "transposed" (rank >= 2) or "strided"
    data: str = "normal"  # "normal" (zero mean) or "positive" (sums grow: exposes low-precision accumulation)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (*self.batch, self.in_features)

    @property
    def rows(self) -> int:
        return math.prod(self.batch)


CASES: tuple[GateCase, ...] = (
    GateCase("rank1", (), 16, 8),
    GateCase("rank2", (5,), 16, 8),
    GateCase("rank2_nobias", (5,), 16, 8, bias=False),
    GateCase("rank3", (2, 3), 32, 24),
    GateCase("rank3_nobias", (2, 3), 32, 24, bias=False),
    GateCase("rank4", (2, 2, 3), 16, 8),
    GateCase("empty_batch", (0,), 16, 8),
    GateCase("empty_batch_rank3", (2, 0), 16, 8),
    GateCase("in_features_1", (4,), 1, 8),
    GateCase("out_features_1", (4,), 16, 1),
    GateCase("square", (6,), 12, 12),
    GateCase("noncontiguous_transposed", (6,), 16, 8, layout="transposed"),
    GateCase("noncontiguous_strided", (2, 3), 16, 8, layout="strided"),
    GateCase("positive_k16", (8,), 16, 8, data="positive"),
    GateCase("positive_k256", (8,), 256, 16, data="positive"),
    GateCase("wide_k1024", (4,), 1024, 8),
)


def case_for_shape(shape: Shape, bias: bool = True) -> GateCase:
    """The gate case of a sweep shape: the benchmark's own inputs are checked before timing."""
    return GateCase(f"sweep_{shape.id}", shape.batch, shape.in_features, shape.out_features, bias=bias)


@dataclass
class CheckResult:
    """One gate outcome: what ``linbench check --json`` prints per row."""

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

    def to_dict(self) -> dict:
        return asdict(self)


class GateFailure(Exception):
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


def _make_inputs(case: GateCase, dtype: str, n_inputs: int) -> _Inputs:
    gen = torch.Generator().manual_seed(_seed(case.id, dtype))
    td = dtype_of(dtype)
    # Weights scaled by 1/sqrt(in) keep outputs O(1) in every dtype (float16 range).
    scale = 1.0 / math.sqrt(case.in_features) if case.data == "normal" else 1.0 / case.in_features

    def rounded(t):
        return t.to(td).to(torch.float64)

    w = rounded(_sample(gen, (case.out_features, case.in_features), case.data, scale))
    b = rounded(_sample(gen, (case.out_features,), case.data)) if case.bias else None
    xs = [rounded(_sample(gen, case.input_shape, case.data)) for _ in range(n_inputs)]
    gys = [rounded(_sample(gen, (*case.batch, case.out_features), "normal")) for _ in range(n_inputs)]
    return _Inputs(xs, w, b, gys)


# --- comparisons ---------------------------------------------------------------------------


def _expect_tensor(what: str, got: object, shape: tuple[int, ...], dtype: torch.dtype, device: str) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise GateFailure(f"{what} is {type(got).__name__}, not a tensor")
    if tuple(got.shape) != tuple(shape):
        raise GateFailure(f"{what} has shape {list(got.shape)}, expected {list(shape)}")
    if got.dtype != dtype:
        raise GateFailure(f"{what} has dtype {str(got.dtype).removeprefix('torch.')}, "
                          f"expected {str(dtype).removeprefix('torch.')}")
    if got.device.type != torch.device(device).type:
        raise GateFailure(f"{what} is on {got.device}, expected {device}")
    return got


def _compare(what: str, got: torch.Tensor, ref: torch.Tensor, tol: torch.Tensor) -> float:
    """Worst |got - ref| / tol; raises GateFailure when any element is out of tolerance."""
    if ref.numel() == 0:
        return 0.0
    g = got.detach().to("cpu", torch.float64)
    if not torch.isfinite(g).all():
        bad = (~torch.isfinite(g)).nonzero()[0].tolist()
        raise GateFailure(f"{what} has a non-finite value {g[tuple(bad)].item()} at index {bad}")
    ratio = (g - ref).abs() / tol
    worst = float(ratio.max())
    if worst > 1.0:
        idx = tuple(torch.nonzero(ratio == ratio.max())[0].tolist())
        raise GateFailure(
            f"{what} off by {float((g - ref).abs()[idx]):.3g} at index {list(idx)} "
            f"(got {float(g[idx]):.6g}, expected {float(ref[idx]):.6g}); "
            f"tolerance {float(tol[idx]):.3g}, {worst:.3g}x over"
        )
    return worst


def _unchanged(what: str, tensor: torch.Tensor, before: torch.Tensor) -> None:
    if not torch.equal(tensor.detach(), before):
        raise GateFailure(f"{what} was modified in place by the implementation")


# --- running ---------------------------------------------------------------------------------


def _prepare(case: GateCase, dtype: str, device: str, inputs: _Inputs, requires_grad: bool):
    td = dtype_of(dtype)
    # clone(): .to() returns the very tensor when nothing changes (float64 on the CPU),
    # and the float64 reference must not share storage with what the implementation gets.
    weight = nn.Parameter(inputs.w64.to(device, td).clone(), requires_grad=requires_grad)
    bias = None if inputs.b64 is None else nn.Parameter(inputs.b64.to(device, td).clone(), requires_grad=requires_grad)
    return weight, bias


def _forward_reference(x64, w64, b64):
    y = x64 @ w64.T
    return y if b64 is None else y + b64


def run_check(impl: Impl, case: GateCase, dtype: str, device: str, check: str, n_inputs: int = 3) -> CheckResult:
    """Run one gate; every exception from the implementation becomes a failed result."""
    result = CheckResult(
        impl=impl.name, check=check, case=case.id, shape=list(case.input_shape),
        in_features=case.in_features, out_features=case.out_features, bias=case.bias,
        dtype=dtype, device=device, status="pass",
    )
    limit = impl.limits.excludes(dtype=dtype, device=device, rank=len(case.input_shape))
    if limit:
        result.status, result.reason = "skip", limit
        return result
    try:
        if check == "forward":
            result.max_error_ratio = _check_forward(impl, case, dtype, device, n_inputs)
        elif check == "backward":
            result.max_error_ratio = _check_backward(impl, case, dtype, device, n_inputs)
        else:
            raise ValueError(f"unknown check {check!r}")
    except GateFailure as exc:
        result.status, result.reason = "fail", str(exc)
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
    """One implementation built on a gate case's parameters, with what its checks compare to."""

    case: GateCase
    dtype: str
    device: str
    inputs: _Inputs
    weight: torch.Tensor
    bias: torch.Tensor | None
    forward: object
    before: list[tuple[str, torch.Tensor, torch.Tensor]]  # (name, parameter, its copy)

    @classmethod
    def build(cls, impl: Impl, case: GateCase, dtype: str, device: str, n_inputs: int, requires_grad: bool):
        inputs = _make_inputs(case, dtype, n_inputs)
        weight, bias = _prepare(case, dtype, device, inputs, requires_grad=requires_grad)
        before = [("weight", weight, weight.detach().clone())]
        if bias is not None:
            before.append(("bias", bias, bias.detach().clone()))
        return cls(case, dtype, device, inputs, weight, bias, impl.build(weight, bias), before)

    def check_output(self, i: int, y: object) -> float:
        """Shape, dtype, device and values of the output for input #i; the worst error ratio."""
        td = dtype_of(self.dtype)
        what = f"output for input #{i + 1}"
        _expect_tensor(what, y, (*self.case.batch, self.case.out_features), td, self.device)
        x64, w64, b64 = self.inputs.x64[i], self.inputs.w64, self.inputs.b64
        tol = tolerance(x64.abs() @ w64.abs().T, 0.0 if b64 is None else b64.abs(), self.case.in_features,
                        self.dtype)
        return _compare(what, y, _forward_reference(x64, w64, b64), tol)

    def check_parameters_unchanged(self) -> None:
        for name, tensor, copy in self.before:
            _unchanged(name, tensor, copy)


def _check_forward(impl: Impl, case: GateCase, dtype: str, device: str, n_inputs: int) -> float:
    s = _Subject.build(impl, case, dtype, device, n_inputs, requires_grad=False)
    worst = 0.0
    # Several different inputs through the same forward: catches cached outputs.
    for i, x64 in enumerate(s.inputs.x64):
        x = _layout(x64.to(device, dtype_of(dtype)).clone(), case.layout)
        x_before = x.clone()
        with torch.no_grad():
            y = s.forward(x)
        worst = max(worst, s.check_output(i, y))
        _unchanged(f"input x (call #{i + 1})", x, x_before)
    s.check_parameters_unchanged()
    return worst


def _check_backward(impl: Impl, case: GateCase, dtype: str, device: str, n_inputs: int) -> float:
    td = dtype_of(dtype)
    s = _Subject.build(impl, case, dtype, device, n_inputs, requires_grad=True)
    abs_w = s.inputs.w64.abs()
    worst = 0.0
    for i, (x64, gy64) in enumerate(zip(s.inputs.x64, s.inputs.gy64, strict=True)):
        x = _layout(x64.to(device, td).clone(), case.layout).requires_grad_(True)
        x_before = x.detach().clone()
        y = s.forward(x)
        worst = max(worst, s.check_output(i, y))
        if not y.requires_grad:
            raise GateFailure("output does not require grad: the graph to x, weight and bias is cut")
        targets = [x, s.weight] + ([s.bias] if s.bias is not None else [])
        grads = torch.autograd.grad(y, targets, grad_outputs=gy64.to(device, td).clone(), allow_unused=True)
        names = ["grad of x", "grad of weight", "grad of bias"]
        for name, g in zip(names, grads, strict=False):  # no bias: two grads
            if g is None:
                raise GateFailure(f"{name} is None: the implementation does not propagate to it "
                                  "(a detached or copied parameter?)")
        x2 = x64.reshape(-1, case.in_features)
        gy2 = gy64.reshape(-1, case.out_features)
        # Reference gradients of y = x Wᵀ + b, each with the length of its own sum.
        checks = [
            ("grad of x", grads[0], gy64 @ s.inputs.w64, gy64.abs() @ abs_w, case.out_features, x.shape),
            ("grad of weight", grads[1], gy2.T @ x2, gy2.abs().T @ x2.abs(), case.rows, s.weight.shape),
        ]
        if s.bias is not None:
            checks.append(("grad of bias", grads[2], gy2.sum(0), gy2.abs().sum(0), case.rows, s.bias.shape))
        for name, g, ref, abs_terms, k, shape in checks:
            what = f"{name} for input #{i + 1}"
            _expect_tensor(what, g, tuple(shape), td, device)
            worst = max(worst, _compare(what, g, ref, tolerance(abs_terms, 0.0, k, dtype)))
        _unchanged(f"input x (call #{i + 1})", x, x_before)
    s.check_parameters_unchanged()
    return worst


CHECKS = ("forward", "backward")


def iter_checks(impl: Impl, devices: list[str], dtypes: tuple[str, ...] = DTYPES,
                cases: tuple[GateCase, ...] = CASES) -> Iterator[tuple[GateCase, str, str, str]]:
    """Every (case, dtype, device, check) the gates run for one implementation."""
    for device in devices:
        for dtype in dtypes:
            for case in cases:
                for check in CHECKS:
                    yield case, dtype, device, check


def run_gates(impl: Impl, devices: list[str], dtypes: tuple[str, ...] = DTYPES) -> list[CheckResult]:
    return [run_check(impl, case, dtype, device, check)
            for case, dtype, device, check in iter_checks(impl, devices, dtypes)]
