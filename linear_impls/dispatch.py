"""What one call of an implementation runs, in torch's terms: the aten ops it dispatches to.

Instruction counts say *that* a CPU case changed and which C functions did; the op trace
says what an implementation *does*: einsum lowers to permutes, reshapes and a ``bmm``,
the bmm recipe expands the weight per row, mul_sum materialises a (rows, out, in)
product before its ``sum``, and whether nn.Linear on a 3-D input becomes one ``addmm``
depends on torch's version.  Recorded with a ``TorchDispatchMode`` (as PyTorch's own
``LoggingTensorMode`` in ``torch/testing/_internal/logging_tensor.py``): every aten op
that reaches the dispatcher, in order, with its inputs' shapes and dtypes, whether each
output is a fresh allocation or a view of an input, and its bytes.  Deterministic: no
timing, the same trace in every run of one torch.

The inputs (x, W, b and, for a training step, the output's gradient) are made before
the mode is entered, so the trace holds the call's own ops only; a training step's
backward ops are marked ``backward``.

On CUDA, the call runs once more under ``torch.profiler``, and each op gets the names of
the kernels it launched (the profiler attaches a kernel to the aten op whose launch it
correlates with), matched to the trace's ops in order by name: a composite op the
profiler shows (``aten::linear``) launches nothing itself and is passed over.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from . import envvars, registry, sidecar, sweep

# Ops that copy data a linear layer's arithmetic intensity does not count.
COPY_OPS = ("clone", "copy_", "_to_copy", "contiguous", "index_put", "cat", "stack", "expand_copy")


@dataclasses.dataclass(frozen=True)
class Op:
    """One aten op of a call: its name (``aten.addmm.default``), the phase it ran in, its
    tensor inputs' shapes and dtypes, and its outputs' (``fresh``: newly allocated bytes,
    0 for a view of an input)."""

    op: str
    phase: str
    inputs: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    outputs: tuple[tuple[int, ...], ...]
    fresh_bytes: int
    view: bool
    kernels: tuple[str, ...] = ()  # on CUDA: the kernels it launched (torch.profiler)

    @property
    def short(self) -> str:
        """``addmm`` for ``aten.addmm.default``."""
        return self.op.split(".")[1] if self.op.count(".") >= 2 else self.op

    @property
    def is_copy(self) -> bool:
        return self.short in COPY_OPS

    def to_dict(self) -> dict:
        return {"op": self.op, "phase": self.phase, "inputs": [list(s) for s in self.inputs],
                "dtypes": list(self.dtypes), "outputs": [list(s) for s in self.outputs],
                "fresh_bytes": self.fresh_bytes, "view": self.view, "kernels": list(self.kernels)}


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[Op] = []
        self.phase = "forward"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        ins = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        in_storages = {_storage(t) for t in ins}
        fresh, view = 0, False
        for t in outs:
            if _storage(t) in in_storages:  # a view of an input, or written in place
                view = view or not func._schema.is_mutable
            else:
                fresh += t.untyped_storage().nbytes()
        self.ops.append(Op(str(func.overloadpacket._qualified_op_name).replace("::", ".") + "." + func._overloadname,
                           self.phase, tuple(tuple(t.shape) for t in ins), tuple(str(t.dtype).removeprefix("torch.")
                                                                                  for t in ins),
                           tuple(tuple(t.shape) for t in outs), fresh, view))
        return out


def _storage(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # a tensor without storage (meta, sparse)
        return id(t)


@dataclasses.dataclass(frozen=True)
class Trace:
    """The ops of one call, and the bytes its intermediates allocated beyond x, W, b and y
    (and, in a training step, beyond the gradients of x, W and b)."""

    impl: str
    shape: str
    dtype: str
    device: str
    mode: str
    ops: tuple[Op, ...]
    intermediate_bytes: int

    def sequence(self, phase: str = "forward") -> list[str]:
        """The ops' short names in order: ``["t", "addmm"]``."""
        return [o.short for o in self.ops if o.phase == phase]

    @property
    def copies(self) -> list[Op]:
        return [o for o in self.ops if o.is_copy]

    def to_dict(self) -> dict:
        return {"impl": self.impl, "shape": self.shape, "dtype": self.dtype, "device": self.device,
                "mode": self.mode, "intermediate_bytes": self.intermediate_bytes,
                "copies": len(self.copies), "ops": [o.to_dict() for o in self.ops]}


def trace(impl_name: str, shape_id: str, dtype: str = "float32", device: str = "cpu",
          mode: str = "forward") -> Trace:
    """Record one call (``mode`` forward: the layer's output; forward_backward: a training
    step, forward then backward) of ``impl_name`` on inputs of ``shape_id``."""
    impl = registry.get(impl_name)
    shape = sweep.parse_shape(shape_id)
    td = sweep.dtype_of(dtype)
    training = mode == "forward_backward"
    gen = torch.Generator().manual_seed(0)

    def rand(*size):
        return torch.randn(size, generator=gen).to(device=device, dtype=td)

    weight = torch.nn.Parameter(rand(shape.out_features, shape.in_features), requires_grad=training)
    bias = torch.nn.Parameter(rand(shape.out_features), requires_grad=training)
    forward = impl.build(weight, bias)
    x = rand(*shape.input_shape).requires_grad_(training)
    gy = rand(*shape.batch, shape.out_features) if training else None
    recorder = _Recorder()
    with recorder:
        y = forward(x)
        if training:
            recorder.phase = "backward"
            y.backward(gy)
    results = [y] + ([t.grad for t in (x, weight, bias) if t.grad is not None] if training else [])
    result_bytes = sum(t.untyped_storage().nbytes() for t in results)
    allocated = sum(o.fresh_bytes for o in recorder.ops)
    ops = recorder.ops
    if device == "cuda":
        ops = attach_kernels(ops, profiled_kernels(lambda: forward(x).backward(gy) if training else forward(x)))
    return Trace(impl_name, shape.id, dtype, device, mode, tuple(ops), max(0, allocated - result_bytes))


def profiled_kernels(call) -> list[tuple[str, tuple[str, ...]]]:
    """``call()`` under torch.profiler (CPU and CUDA activities): every aten op it ran, in the
    order they started, with the names of the kernels each launched itself."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        call()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    events = sorted((e for e in prof.events() if e.name.startswith("aten::")), key=lambda e: e.time_range.start)
    return [(e.name, tuple(k.name for k in getattr(e, "kernels", ()))) for e in events]


def attach_kernels(ops: list[Op], events: list[tuple[str, tuple[str, ...]]]) -> list[Op]:
    """Each op with the kernels of the profiler's event that matches it: the next event of the
    same name (``aten.addmm.default`` is ``aten::addmm``), in order.  Events of other names
    (composites such as ``aten::linear``, which launch nothing themselves) are passed over; an
    op without a matching event keeps no kernels, and the ops after it are matched still."""
    out, i = [], 0
    for o in ops:
        want = "aten::" + o.short
        j = next((k for k in range(i, len(events)) if events[k][0] == want), None)
        if j is None:
            out.append(o)
            continue
        out.append(dataclasses.replace(o, kernels=tuple(events[j][1])))
        i = j + 1
    return out


def format_trace(t: Trace) -> str:
    """The trace as text: one line per op, then the totals."""
    lines = [f"{t.impl} {t.shape} {t.dtype} {t.device} {t.mode}: {len(t.ops)} aten ops"]
    for phase in ("forward", "backward"):
        ops = [o for o in t.ops if o.phase == phase]
        if not ops:
            continue
        lines.append(f"{phase}: {', '.join(o.short for o in ops)}")
        for o in ops:
            ins = " ".join("x".join(map(str, s)) or "scalar" for s in o.inputs)
            outs = " ".join("x".join(map(str, s)) or "scalar" for s in o.outputs)
            kind = "view" if o.view else (f"{o.fresh_bytes:,} B new" if o.fresh_bytes else "in place")
            lines.append(f"  {o.op:<34} {ins or '-':<30} -> {outs or '-':<14} {kind}{'  (copy)' if o.is_copy else ''}")
            lines += [f"      kernel: {k}" for k in o.kernels]
    lines.append(f"intermediates: {t.intermediate_bytes:,} bytes beyond x, W, b and "
                 + ("y and the gradients" if t.mode == "forward_backward" else "y")
                 + f"; copies: {len(t.copies)}" + (f" ({', '.join(o.short for o in t.copies)})" if t.copies else ""))
    return "\n".join(lines)


# --- kept with the results: one summary per case, beside asv's files --------------------

SIDECAR = "dispatch"  # the folder under asv's results folder (its ``.json.gz``: asv reads only ``.json``)
_FORMAT = 1


def case_key(impl: str, shape: str, dtype: str, device: str, mode: str) -> str:
    return f"{impl}|{shape}|{dtype}|{device}|{mode}"


def summary(t: Trace) -> dict:
    """What the history keeps of a trace: the ops in order with their phase, the fresh bytes
    of the intermediates and the copies."""
    out = {"ops": [f"{o.phase[0]}:{o.op}" for o in t.ops], "intermediate_bytes": t.intermediate_bytes,
           "copies": len(t.copies)}
    if any(o.kernels for o in t.ops):  # on CUDA: the kernels of each op, beside the ops
        out["kernels"] = [list(o.kernels) for o in t.ops]
    return out


def short_sequence(ops: list[str], phase: str = "forward") -> str:
    """``t, addmm`` from a summary's ops: the phase's short names in order."""
    return ", ".join(o.split(":", 1)[1].split(".")[1] for o in ops if o.startswith(phase[0] + ":"))


def kernel_text(ops: list[str], kernels: list | None) -> str:
    """``addmm: sm90_xmma_gemm_...; add: vectorized_elementwise_kernel`` from a summary's ops
    and kernels (CUDA only; "" without kernels)."""
    if not isinstance(kernels, list):
        return ""
    parts = [f"{o.split(':', 1)[1].split('.')[1]}{' (backward)' if o.startswith('b:') else ''}: {', '.join(k)}"
             for o, k in zip(ops, kernels, strict=False) if k]
    return "; ".join(parts)


def display(op: str) -> str:
    """A summary's op for a reader: ``aten.clone.default``, ``aten.mm.default (backward)``."""
    phase, _, name = op.partition(":")
    return f"{name} (backward)" if phase == "b" else name


def changed_ops(old: list[str], new: list[str]) -> tuple[list[str], list[str]]:
    """(added, removed): the ops one sequence has more of than the other, counted, in order,
    as :func:`display` writes them."""
    from collections import Counter

    more, fewer = Counter(new) - Counter(old), Counter(old) - Counter(new)

    def listed(ops, counts):
        out = []
        for o in ops:
            if counts[o] > 0:
                out.append(o)
                counts[o] -= 1
        return out

    return [display(o) for o in listed(new, more)], [display(o) for o in listed(old, fewer)]


# Where a run keeps its traces: linbench run sets the machine's folder; plain asv, which
# cannot tell a benchmark its machine, one folder beside every machine's results.
SIDECAR_ENV = envvars.DISPATCH_DIR


def sidecar_file(folder: Path, commit: str, env_name: str) -> Path:
    return sidecar.path_for(folder, commit, env_name)


def save(path: Path, commit: str, env_name: str, cases: dict[str, dict]) -> None:
    """Merge one run's summaries into the commit's file."""
    data = load_file(path) or {"format": _FORMAT, "commit": commit, "env_name": env_name, "cases": {}}
    data["cases"].update(cases)
    sidecar.write(path, data)


def load_file(path: Path) -> dict | None:
    data = sidecar.read(path)
    return data if data is not None and data.get("format") == _FORMAT else None


def load_all(results_dir: Path) -> list[dict]:
    """Every case of every trace file under ``results_dir``: records with machine ("" in plain
    asv's shared folder), env, commit, impl, shape, dtype, device, mode, ops,
    intermediate_bytes, copies."""
    rows = []
    results_dir = Path(results_dir)
    for path in sorted([*results_dir.glob(f"{SIDECAR}/*.json.gz"), *results_dir.glob(f"*/{SIDECAR}/*.json.gz")]):
        data = load_file(path)
        if not data:
            continue
        # A machine's own folder, or "" for plain asv's shared one (matched by commit and env).
        machine = path.parent.parent.name if path.parent.parent != results_dir else ""
        for key, case in data["cases"].items():
            parts = key.split("|")
            if len(parts) != 5 or not isinstance(case, dict) or not isinstance(case.get("ops"), list):
                continue
            rows.append({"machine": machine, "env": data.get("env_name", ""),
                         "commit": data.get("commit", ""), **dict(zip(("impl", "shape", "dtype", "device", "mode"),
                                                                      parts, strict=True)),
                         "ops": case["ops"], "intermediate_bytes": case.get("intermediate_bytes"),
                         "copies": case.get("copies"), "kernels": case.get("kernels")})
    return rows
