"""The one sweep definition shared by the checks, the asv benchmarks and the reports.

Shapes are written ``"{batch dims x}in x out"``: ``"64x256x256"`` is a batch of 64
rows into a 256 -> 256 layer, ``"8x128x768x3072"`` an (8, 128, 768) input to a
768 -> 3072 layer and ``"3x2"`` a 1-D input of 3 features to a 3 -> 2 layer.

Three sweeps, picked with ``$LINBENCH_SWEEP`` (default ``default``):

* ``quick``   - a handful of cases for pull requests (< 2 minutes of asv here);
* ``default`` - the seed articles' examples, overhead-bound, mid and transformer
  shapes (< 10 minutes of asv on a 2-core CPU);
* ``full``    - adds large GEMMs for bigger machines;
* ``gpu``     - every metric on a few cases, for the GPU proof (``benchmarks/gpu_proof.sh``);
* a sweep file (``linear_impls.sweepfile``): exactly the cases of a user's model, as
  ``linbench capture`` records them or as written by hand.

The asv params always list every shape, dtype and device, so results of different
sweeps and machines line up in one history; a case outside the chosen sweep, or
one this machine cannot run in the sweep's budget, is skipped (asv ``n/a``).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import torch

from . import envvars, gpu

SWEEP_ENV = envvars.SWEEP
THREADS_ENV = envvars.THREADS

DTYPES = ("float32", "float64", "bfloat16", "float16")
DEVICES = ("cpu", "cuda")
MODES = ("forward", "forward_backward")
# A training step's work: forward, then dX and dW (each as large as the forward).
MODE_FLOP_FACTOR = {"forward": 1, "forward_backward": 3}


class ShapeError(ValueError):
    """A malformed shape string."""


@dataclass(frozen=True)
class Shape:
    """An input of shape ``batch + (in_features,)`` into an in -> out layer."""

    batch: tuple[int, ...]
    in_features: int
    out_features: int

    @property
    def id(self) -> str:
        return "x".join(str(d) for d in (*self.batch, self.in_features, self.out_features))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (*self.batch, self.in_features)

    @property
    def rows(self) -> int:
        """The flattened batch: how many output rows the layer computes."""
        return math.prod(self.batch)

    def flops(self, mode: str = "forward") -> int:
        return 2 * self.rows * self.in_features * self.out_features * MODE_FLOP_FACTOR[mode]

    def arithmetic_intensity(self, itemsize: int) -> float:
        """FLOPs per byte of x, W, b and y moved once (the roofline's x axis)."""
        moved = (
            self.rows * self.in_features + self.in_features * self.out_features + self.out_features
            + self.rows * self.out_features
        ) * itemsize
        return self.flops() / max(moved, 1)

    def tensor_bytes(self, itemsize: int, mode: str = "forward") -> int:
        """Bytes of x, W, b and y (and their gradients in forward_backward)."""
        n = self.rows * self.in_features + self.in_features * self.out_features + self.out_features
        n += self.rows * self.out_features
        return n * itemsize * (2 if mode == "forward_backward" else 1)

    def __str__(self) -> str:
        return self.id


_SHAPE_RE = re.compile(r"^\d+(x\d+)+$")


def parse_shape(text: str) -> Shape:
    """Parse ``"64x256x256"``; malformed strings raise ShapeError saying why."""
    if not isinstance(text, str):
        raise ShapeError(f"shape must be a string like '64x256x256', got {text!r}")
    s = text.strip().lower()
    if not _SHAPE_RE.match(s):
        raise ShapeError(
            f"malformed shape {text!r}: expected positive integers joined by 'x', "
            "'{batch dims x}in x out' such as '64x256x256' or '3x2'"
        )
    dims = [int(d) for d in s.split("x")]
    *batch, in_features, out_features = dims
    if in_features < 1 or out_features < 1:
        raise ShapeError(f"malformed shape {text!r}: in_features and out_features must be at least 1")
    return Shape(tuple(batch), in_features, out_features)


# The implementations the asv suite compiles (linear_impls.compiled): the naive
# formulation compiling can rescue, the fused one it cannot improve, and one between.
COMPILE_IMPLS = ("f_linear", "mul_sum", "einsum")

# The seed articles' own examples, then overhead-bound, mid-size and transformer-like cases.
SEED_SHAPES = ("3x2x3", "128x20x30", "140x100x50", "1x5x1", "3x2")
DEFAULT_SHAPES = SEED_SHAPES + (
    "1x8x8",  # overhead-bound: the call costs more than the arithmetic
    "1x64x64",
    "64x256x256",
    "512x1024x1024",
    "8x128x768x3072",  # BERT-base FFN up-projection
    "1x4096x4096",  # a 4096-wide decode step: a GEMV, memory-bound
)
QUICK_SHAPES = ("3x2x3", "1x8x8", "1x64x64", "64x256x256")
FULL_SHAPES = DEFAULT_SHAPES + (
    "8x128x3072x768",  # BERT-base FFN down-projection
    "4096x4096x4096",
    "1x4096x11008",  # a LLaMA-7B MLP decode step
    "16x512x4096x4096",
)
ALL_SHAPES = tuple(dict.fromkeys(DEFAULT_SHAPES + QUICK_SHAPES + FULL_SHAPES))


@dataclass(frozen=True)
class Sweep:
    """Which shapes, dtypes and devices a sweep runs, and its per-call time budget."""

    name: str
    shapes: tuple[str, ...]
    dtypes: tuple[str, ...]
    # A case whose estimated time for one call is above this is skipped with a
    # reason instead of running for minutes: asv takes ~10-20 samples of each.
    max_call_seconds: float
    # Dtypes whose peak host memory is measured too (one more process per case;
    # the peak scales with the itemsize, so one dtype tells most of it).
    memory_dtypes: tuple[str, ...] = ("float32",)
    # Dtypes whose instructions per call are counted under callgrind, and the largest
    # estimated count per call that is: valgrind runs SIMD code 100x or more slower
    # than the CPU does, so a 100 M-instruction call costs tens of seconds there.
    instruction_dtypes: tuple[str, ...] = ("float32",)
    max_call_instructions: float = 20e6
    # Where the torch.compile'd variants (linear_impls.compiled) run: each case compiles
    # in every process that times it, and once more cold and warm for its compile time,
    # so a few shapes chosen to show where compiling helps and where it does not.
    compile_shapes: tuple[str, ...] = ()
    compile_dtypes: tuple[str, ...] = ("float32",)
    compile_modes: tuple[str, ...] = ("forward",)
    # Dtypes whose speedups over the baseline are timed interleaved (bench_linear.Speedup,
    # in bench.SPEEDUP_PROCESSES worker processes): every one, so no dtype's first screen
    # is a quotient of wall times from separate processes.
    speedup_dtypes: tuple[str, ...] = DTYPES
    # A sweep file's: the modes it runs, its exact (shape, dtype, device) cases and the
    # file itself (its absolute path: what crosses into asv's processes as $LINBENCH_SWEEP).
    modes: tuple[str, ...] = MODES
    cases: frozenset = frozenset()
    path: str = ""

    @property
    def ref(self) -> str:
        """What names this sweep to another process: a built-in's name or the file's path."""
        return self.path or self.name

    def in_compile_subset(self, shape_id: str, dtype: str, mode: str) -> bool:
        """Whether a compiled variant runs this case in this sweep."""
        return shape_id in self.compile_shapes and dtype in self.compile_dtypes and mode in self.compile_modes


SWEEPS = {
    "quick": Sweep("quick", QUICK_SHAPES, ("float32",), 0.01, memory_dtypes=()),
    # 0.12 s keeps the float32 BERT FFN training step in (~50-100 ms here).
    # Compiled: an overhead-bound call (compiling cannot beat the Python it removes by
    # much) and a mid-size one (where it fuses mul_sum's broadcast product away).
    "default": Sweep("default", DEFAULT_SHAPES, DTYPES, 0.12, compile_shapes=("1x64x64", "64x256x256")),
    "full": Sweep("full", FULL_SHAPES, DTYPES, 2.0, memory_dtypes=DTYPES,
                  compile_shapes=("1x64x64", "64x256x256", "512x1024x1024"), compile_modes=MODES),
    # The GPU proof's (benchmarks/gpu_proof.sh): every metric on a few cases in minutes, an
    # overhead-bound, a mid-size, a transformer and a GEMV shape, float32 (TF32 pinned off)
    # and float16.
    "gpu": Sweep("gpu", ("1x64x64", "64x256x256", "8x128x768x3072", "1x4096x4096"), ("float32", "float16"), 0.05,
                 memory_dtypes=("float32", "float16"), speedup_dtypes=("float32", "float16"),
                 compile_shapes=("64x256x256",)),
}


def load(ref: str) -> Sweep:
    """A built-in sweep by name, or a sweep file by path (``sweepfile.SweepFileError`` saying why
    one cannot be used); ValueError for a name that is neither."""
    from . import sweepfile

    if ref in SWEEPS:
        return SWEEPS[ref]
    if not sweepfile.looks_like_file(ref):
        raise ValueError(f"unknown sweep {ref!r}: choose one of {', '.join(SWEEPS)}, or a sweep file (.toml, .json)")
    return from_file(sweepfile.load(ref))


def from_file(sf) -> Sweep:
    """The Sweep of a loaded sweep file: its cases, in its modes, no compiled subset, memory and
    instruction counts in float32 where it has float32 cases."""
    dtypes = tuple(d for d in DTYPES if any(c.dtype == d for c in sf.cases))
    return Sweep(sf.name, tuple(dict.fromkeys(c.shape for c in sf.cases)), dtypes, sf.max_call_seconds,
                 memory_dtypes=tuple(d for d in dtypes if d == "float32"),
                 instruction_dtypes=tuple(d for d in dtypes if d == "float32"),
                 speedup_dtypes=dtypes, modes=tuple(m for m in MODES if m in sf.modes),
                 cases=frozenset(c.key for c in sf.cases), path=sf.path)


def file_shapes() -> tuple[str, ...]:
    """The shapes of the sweep file in $LINBENCH_SWEEP (none for a built-in sweep): asv's params
    add them, so a model's shapes are cases of their own."""
    value = os.environ.get(SWEEP_ENV, "").strip()
    if not value or value in SWEEPS:
        return ()
    return tuple(s for s in current_sweep().shapes if s not in ALL_SHAPES)


def current_sweep() -> Sweep:
    name = os.environ.get(SWEEP_ENV, "default").strip() or "default"
    try:
        return load(name)
    except ValueError as exc:  # SweepFileError too
        raise ValueError(f"${SWEEP_ENV}: {exc}") from None


def thread_count() -> int:
    """The pinned thread count: ``$LINBENCH_THREADS``, else every core torch would use."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return torch.get_num_threads()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"${THREADS_ENV} must be a positive integer, got {value!r}")
    return int(value)


def dtype_of(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, name)


# Rough rates of this class of machine (2-core AVX2 CPU), used only to skip cases
# that would blow a sweep's budget: float32 GEMM ~150 GFLOP/s, float64 half that,
# bfloat16/float16 ~10 GFLOP/s (no native support), memory ~10 GB/s.
_CPU_GFLOPS = {"float32": 150.0, "float64": 70.0, "bfloat16": 10.0, "float16": 8.0}
_CPU_BYTES_PER_S = 10e9
# On CUDA, rates a current data-centre GPU beats and a consumer one reaches, per dtype:
# float64 runs at 1/32-1/64 of float32 on consumer GPUs (1/2 on an H100), float32 in full
# precision (TF32 is pinned off: linear_impls.gpu), the half types on tensor cores.
_CUDA_GFLOPS = {"float32": 20_000.0, "float64": 500.0, "bfloat16": 100_000.0, "float16": 100_000.0}
_CUDA_BYTES_PER_S = 1e12
# Launching a kernel or two, whatever the size.
_CUDA_LAUNCH_SECONDS = 10e-6


def estimated_seconds(shape: Shape, dtype: str, device: str, mode: str, workspace_bytes: int = 0) -> float:
    itemsize = dtype_of(dtype).itemsize
    moved = shape.tensor_bytes(itemsize, mode) + workspace_bytes * MODE_FLOP_FACTOR[mode]
    if device == "cuda":
        return (shape.flops(mode) / (_CUDA_GFLOPS[dtype] * 1e9) + moved / _CUDA_BYTES_PER_S
                + _CUDA_LAUNCH_SECONDS * MODE_FLOP_FACTOR[mode])
    return shape.flops(mode) / (_CPU_GFLOPS[dtype] * 1e9) + moved / _CPU_BYTES_PER_S


def available_devices() -> list[str]:
    """Devices this machine can run, without creating a CUDA context (fork-safe)."""
    devices = ["cpu"]
    if cuda_available():
        devices.append("cuda")
    return devices


def cuda_available() -> bool:
    return gpu.cuda_unavailable_reason() is None


def device_unavailable_reason(device: str) -> str | None:
    """Why ``device`` cannot run cases here (None when it can)."""
    if device == "cpu":
        return None
    if device == "cuda":
        return gpu.cuda_unavailable_reason()
    return f"unknown device {device!r}"


def free_memory_bytes(device: str) -> int:
    """Memory a case may use on ``device``: available RAM, or free device memory."""
    if device == "cuda":
        free, _total = torch.cuda.mem_get_info()
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown: do not skip on memory grounds


def cases(sweep_def: Sweep, impls, dtypes=None, devices=None, modes=None):
    """Every (impl, shape, dtype, device, mode) of ``sweep_def`` for ``impls``, in one order:
    the loop instruction counting and ``linbench sweep`` share.  ``dtypes``, ``devices`` and
    ``modes`` default to the sweep's own (devices: every one).  Which of them run is each
    caller's policy: ``skip_reason``."""
    for impl in impls:
        for shape_id in sweep_def.shapes:
            shape = parse_shape(shape_id)
            for dtype in sweep_def.dtypes if dtypes is None else dtypes:
                for device in DEVICES if devices is None else devices:
                    for mode in sweep_def.modes if modes is None else modes:
                        yield impl, shape, dtype, device, mode


def design_reason(impl, shape: Shape, dtype: str, device: str, mode: str, sweep: Sweep | None = None) -> str | None:
    """Why a sweep skips a case by design, whatever the machine (None when it runs it): the
    sweep's cases, the implementation's declared limits, the per-call budget and the cost of
    its check's reference.  The report judges a results file's missing cases by this, on a
    machine that may not be the one that ran it."""
    sweep = sweep or current_sweep()
    if shape.id not in sweep.shapes:
        return f"not in the {sweep.name!r} sweep"
    if mode not in sweep.modes:
        return f"{mode} not in the {sweep.name!r} sweep"
    if sweep.cases and (shape.id, dtype, device) not in sweep.cases:
        return f"{shape.id} {dtype} {device}: not a case of the {sweep.name!r} sweep file"
    from .compiled import is_compiled

    if is_compiled(impl.name) and not sweep.in_compile_subset(shape.id, dtype, mode):
        return (f"compiled variants run on the {sweep.name!r} sweep's compile subset only: "
                f"{', '.join(sweep.compile_shapes) or 'none'}; {', '.join(sweep.compile_dtypes)}; "
                f"{', '.join(sweep.compile_modes)}")
    if dtype not in sweep.dtypes:
        return f"{dtype} not in the {sweep.name!r} sweep"
    if impl.untimed:
        return f"{impl.name}: {impl.untimed}"
    limit = impl.limits.excludes(dtype=dtype, device=device, rank=len(shape.input_shape))
    if limit:
        return f"{impl.name}: {limit}"
    est = estimated_seconds(shape, dtype, device, mode, _workspace(impl, shape, dtype))
    if est > sweep.max_call_seconds:
        bigger = "raise max_call_seconds in the file to run it" if sweep.path else "the 'full' sweep runs it"
        return (f"estimated {est * 1e3:.0f} ms a call, over the {sweep.name!r} sweep's "
                f"{sweep.max_call_seconds * 1e3:.0f} ms budget ({bigger})")
    ref = reference_seconds(shape, mode)
    if ref > MAX_REFERENCE_SECONDS:
        return f"its check's float64 reference on the CPU would take ~{ref:.0f} s, over {MAX_REFERENCE_SECONDS:.0f} s"
    return None


def _workspace(impl, shape: Shape, dtype: str) -> int:
    if not impl.limits.workspace:
        return 0
    return impl.limits.workspace(shape.rows, shape.in_features, shape.out_features, dtype_of(dtype).itemsize)


def skip_reason(impl, shape: Shape, dtype: str, device: str, mode: str, sweep: Sweep | None = None,
                *, free_bytes: dict[str, int] | int | None = None) -> str | None:
    """Why a case is not run here (None when it is): the device, the sweep's design
    (``design_reason``), what this machine cannot do (a compiled variant without a compiler),
    and memory on each device the case needs.

    ``free_bytes``: free memory per device (an int: the case's own device), instead of asking."""
    unavailable = device_unavailable_reason(device)
    if unavailable:
        return f"device {device} not available on this machine: {unavailable}"
    reason = design_reason(impl, shape, dtype, device, mode, sweep)
    if reason:
        return reason
    cannot = impl.unavailable(device)
    if cannot:
        return f"{impl.name}: {cannot}"
    given = {device: free_bytes} if isinstance(free_bytes, int) else (free_bytes or {})
    for where, need in memory_needs(shape, dtype, device, mode, _workspace(impl, shape, dtype)).items():
        free = given[where] if where in given else free_memory_bytes(where)
        if need > free * 0.8:
            what = "the case" if where == device and device != "cpu" else (
                "the case and its check's float64 reference" if where == device else "its check's float64 reference")
            return f"{what} need ~{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free on {where}"
    return None


def memory_needs(shape: Shape, dtype: str, device: str, mode: str, workspace: int = 0) -> dict[str, int]:
    """Bytes a case needs on each device: its tensors, gradients and workspace where it runs,
    and the float64 reference its check computes, which is always on the CPU (with the
    device's results copied there to be compared)."""
    itemsize = dtype_of(dtype).itemsize
    case = shape.tensor_bytes(itemsize, mode) + workspace * MODE_FLOP_FACTOR[mode]
    reference = shape.tensor_bytes(8, mode)
    if device == "cpu":
        return {"cpu": case + reference}
    return {device: case, "cpu": 2 * reference}


# A check's float64 reference runs once per case, before any timing, on the CPU: a case whose
# reference would take longer is skipped, whichever device it is timed on.
MAX_REFERENCE_SECONDS = 120.0


def reference_seconds(shape: Shape, mode: str) -> float:
    """Estimated time of a case's float64 reference (and its gradients) on this CPU."""
    return shape.flops(mode) / (_CPU_GFLOPS["float64"] * 1e9)
