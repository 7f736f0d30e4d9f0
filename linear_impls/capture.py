"""``linbench capture``: every linear-layer call of one step of a user's model, as a sweep file.

A user points it at ``MODULE:CALLABLE`` (a dotted module or a ``.py`` path), a callable that
returns ``(model, example_args)``; one forward (or, with ``mode="forward_backward"``, one
training step: the forward, then the backward of the sum of its floating-point outputs) runs,
and each call of ``F.linear`` is recorded with its input shape, bias, dtype, device and the
parameter (hence the module) whose weight it used.  Calls with the same shape, dtype, device
and bias are one case, counted.

How the calls are seen, and why two ways:

* ``torch.nn.functional.linear`` is replaced by a recording wrapper for the step.  Python code
  calling ``F.linear`` (``nn.Linear`` and its subclasses) or the module-level ``linear`` of
  ``torch.nn.functional`` looks the name up at call time, so the wrapper sees it, wherever it is
  nested: ``nn.MultiheadAttention`` computes its projections with that ``linear`` inside
  ``F.multi_head_attention_forward``, never calling its ``out_proj`` module.  A
  ``TorchFunctionMode`` alone misses those: it is off while its handler runs the intercepted
  ``multi_head_attention_forward``, and re-entering it recurses.
* A ``TorchFunctionMode`` catches the calls that do not look the name up (``torch._C._nn.linear``,
  or ``linear`` imported into a module before the capture), not already seen by the wrapper.

Autograd stays on during the capture even for a forward: ``nn.TransformerEncoderLayer`` and
``nn.MultiheadAttention`` switch to a fused inference kernel without it, whose projections no
Python-level hook can see (the file's notes say so).  Autocast is honoured: a call under
autocast is recorded in the dtype autocast computes it in.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from . import sweep, sweepfile

MODES = sweep.MODES


class CaptureError(Exception):
    """The model could not be captured; the message says why in one line."""


@dataclass(frozen=True)
class Call:
    """One F.linear call as the model made it."""

    shape: str  # the sweep's notation
    dtype: str
    device: str
    bias: bool
    module: str
    grad_input: bool = False  # a training step computes dX for it
    grad_weight: bool = False  # ... and dW

    @property
    def flops(self) -> int:
        return sweep.parse_shape(self.shape).flops()


@dataclass
class Capture:
    calls: list[Call]
    skipped: dict[str, int]  # reason -> calls not recorded
    training: bool = False

    def cases(self) -> list[sweepfile.FileCase]:
        """One case per (shape, dtype, device, bias), in the order first called."""
        grouped: dict[tuple, list[Call]] = {}
        for c in self.calls:
            grouped.setdefault((c.shape, c.dtype, c.device, c.bias), []).append(c)
        out = []
        for (shape, dtype, device, bias), calls in grouped.items():
            out.append(sweepfile.FileCase(shape, dtype, device, bias, len(calls),
                                          tuple(dict.fromkeys(c.module for c in calls)),
                                          *((sum(c.grad_input for c in calls), sum(c.grad_weight for c in calls))
                                            if self.training else (None, None))))
        return out


def _param_names(model: torch.nn.Module) -> dict[int, str]:
    names = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), name)
    for name, b in model.named_buffers(remove_duplicate=False):
        names.setdefault(id(b), name)
    return names


def _owner(param_name: str) -> str:
    """``layers.0.linear1.weight`` -> ``layers.0.linear1``; ``self_attn.in_proj_weight`` ->
    ``self_attn.in_proj``."""
    for suffix in (".weight", "_weight"):
        if param_name.endswith(suffix):
            return param_name[: -len(suffix)]
    return param_name


def _dtype_name(x: torch.Tensor) -> str:
    dtype = x.dtype
    if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type) and dtype.is_floating_point:
        dtype = torch.get_autocast_dtype(x.device.type)
    return str(dtype).removeprefix("torch.")


class _Recorder(TorchFunctionMode):
    def __init__(self, model: torch.nn.Module, training: bool):
        super().__init__()
        self.params = _param_names(model)
        self.module_names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
        self.stack: list[str] = []
        self.training = training
        self.calls: list[Call] = []
        self.skipped: dict[str, int] = {}
        self.in_wrapper = 0

    def record(self, x, weight, bias) -> None:
        if not (isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor)) or weight.dim() != 2 \
                or x.dim() < 1:
            self._skip("F.linear with inputs that are not tensors of a linear layer's shapes")
            return
        dtype, device = _dtype_name(x), x.device.type
        if dtype not in sweep.DTYPES:
            self._skip(f"in {dtype} (linbench times {', '.join(sweep.DTYPES)})")
            return
        if device not in sweep.DEVICES:
            self._skip(f"on {device} (linbench times {', '.join(sweep.DEVICES)})")
            return
        out_features, in_features = weight.shape
        shape = "x".join(str(d) for d in (*x.shape[:-1], in_features, out_features))
        name = self.params.get(id(weight))
        if name is None and weight._base is not None:  # a slice of a parameter: MHA's separate q, k, v
            name = self.params.get(id(weight._base))
        module = _owner(name) if name else f"{self.stack[-1] if self.stack else '(model)'} (a computed weight)"
        self.calls.append(Call(shape, dtype, device, bias is not None, module or "(model)",
                               self.training and x.requires_grad and torch.is_grad_enabled(),
                               self.training and weight.requires_grad and torch.is_grad_enabled()))

    def _skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _ORIGINAL_LINEAR and not self.in_wrapper:
            self.record(*_linear_args(args, kwargs))
        return func(*args, **kwargs)

    def wrapper(self) -> Callable:
        def linear(input, weight, bias=None):  # noqa: A002 (F.linear's own argument names)
            self.record(input, weight, bias)
            self.in_wrapper += 1
            try:
                return _ORIGINAL_LINEAR(input, weight, bias)
            finally:
                self.in_wrapper -= 1

        linear.__doc__ = _ORIGINAL_LINEAR.__doc__
        return linear


_ORIGINAL_LINEAR = F.linear


def _linear_args(args, kwargs):
    names = ("input", "weight", "bias")
    values = dict(zip(names, args, strict=False))
    values.update({k: v for k, v in kwargs.items() if k in names})
    return values.get("input"), values.get("weight"), values.get("bias")


def _call(model, example):
    if isinstance(example, dict):
        return model(**example)
    if isinstance(example, (tuple, list)):
        return model(*example)
    return model(example)


def _float_outputs(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if isinstance(out, dict):
        return [t for v in out.values() for t in _float_outputs(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _float_outputs(v)]
    # A model output object (Hugging Face's ModelOutput is a dict; dataclasses are not).
    fields = getattr(out, "__dict__", None)
    return [t for v in fields.values() for t in _float_outputs(v)] if isinstance(fields, dict) else []


def capture(model: torch.nn.Module, example, mode: str = "forward") -> Capture:
    """Run one step of ``model`` on ``example`` (a tensor, a tuple of arguments or a dict of
    keyword arguments) and record its linear calls."""
    if mode not in MODES:
        raise CaptureError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if not isinstance(model, torch.nn.Module):
        raise CaptureError(f"expected an nn.Module to capture, got {type(model).__name__}")
    rec = _Recorder(model, mode == "forward_backward")

    def push(module, _args):
        rec.stack.append(rec.module_names.get(id(module), type(module).__name__))

    def pop(module, _args, _out):
        if rec.stack:
            rec.stack.pop()

    hooks = [torch.nn.modules.module.register_module_forward_pre_hook(push),
             torch.nn.modules.module.register_module_forward_hook(pop)]
    F.linear = rec.wrapper()
    try:
        with torch.enable_grad(), rec:
            out = _call(model, example)
            if mode == "forward_backward":
                # The step's backward ends here: torch.autograd.backward runs no F.linear.
                F.linear = _ORIGINAL_LINEAR
                outputs = [t for t in _float_outputs(out) if t.requires_grad]
                if not outputs:
                    raise CaptureError("a training step needs a floating-point output that depends on a "
                                       "parameter; the model's output has none")
                torch.autograd.backward([t.float().sum() for t in outputs])
    finally:
        F.linear = _ORIGINAL_LINEAR
        for h in hooks:
            h.remove()
    return Capture(rec.calls, rec.skipped, rec.training)


# --- MODULE:CALLABLE ----------------------------------------------------------------------


def load_target(spec: str):
    """Import ``MODULE:CALLABLE`` (``pkg.mod:build`` or ``path/to/file.py:build``), call it, and
    return ``(model, example_args)``; CaptureError with one line on any failure."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise CaptureError(f"expected MODULE:CALLABLE (e.g. mypkg.models:build or models.py:build), got {spec!r}")
    try:
        if module_name.endswith(".py") or "/" in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise CaptureError(f"cannot import {module_name}: no such file")
            mod_spec = importlib.util.spec_from_file_location(f"_linbench_capture_{path.stem}", path)
            module = importlib.util.module_from_spec(mod_spec)
            sys.path.insert(0, str(path.resolve().parent))  # its own imports of neighbours work
            try:
                mod_spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.resolve().parent))
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))  # as `python -m` would find it
            module = importlib.import_module(module_name)
    except CaptureError:
        raise
    except Exception as exc:  # a user's module: any error it raises on import
        raise CaptureError(f"cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise CaptureError(f"{module_name} has no {attr!r}")
    if not callable(factory):
        raise CaptureError(f"{spec} is not callable (a {type(factory).__name__})")
    try:
        made = factory()
    except Exception as exc:
        raise CaptureError(f"{spec}() raised {type(exc).__name__}: {exc}") from None
    if not (isinstance(made, (tuple, list)) and len(made) == 2 and isinstance(made[0], torch.nn.Module)):
        raise CaptureError(f"{spec}() must return (model, example_args) with an nn.Module first, "
                           f"got {type(made).__name__}")
    return made


def capture_target(spec: str, mode: str = "forward", name: str | None = None) -> tuple[sweepfile.SweepFile, Capture]:
    """Capture ``MODULE:CALLABLE`` into a sweep file (not yet written)."""
    model, example = load_target(spec)
    try:
        cap = capture(model, example, mode)
    except CaptureError:
        raise
    except Exception as exc:
        raise CaptureError(f"the model's {'training step' if mode == 'forward_backward' else 'forward'} raised "
                           f"{type(exc).__name__}: {exc}") from None
    if not cap.calls:
        skipped = "; ".join(f"{n} calls {why}" for why, n in cap.skipped.items())
        raise CaptureError("the model made no linear-layer call that linbench can time (F.linear, nn.Linear, "
                           "nn.MultiheadAttention's projections)" + (f": {skipped}" if skipped else ""))
    name = name or spec.rpartition(":")[2]
    if not sweepfile.NAME_RE.match(name) or name in sweep.SWEEPS:
        raise CaptureError(f"cannot name the sweep {name!r}: letters, digits, '_', '-', '.', not a built-in "
                           "sweep's name (--name)")
    notes = ["captured with autograd on: fused inference paths (nn.TransformerEncoderLayer's fast path) "
             "would hide their projections from any Python-level capture",
             "every case is timed with a bias; bias = false marks calls the model makes without one"]
    notes += [f"{n} calls not recorded: {why}" for why, n in cap.skipped.items()]
    sf = sweepfile.SweepFile(name, tuple(cap.cases()), source=f"linbench capture {spec} --mode {mode} "
                             f"(torch {torch.__version__})", modes=(mode,), notes=tuple(notes))
    return sf, cap
