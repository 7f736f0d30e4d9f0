"""What the CUDA paths rest on, in one place a CPU can test: the matmul precision flags the
checks and benchmarks pin, whether CUDA can really run here (decided without touching it in
this process), the GPU's facts recorded with the results, and a call's own device memory.

No GPU has run this project's CUDA paths yet; ``benchmarks/gpu_proof.sh`` is the script
that proves on one what a CPU cannot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import torch

from . import envvars

# --- matmul precision -------------------------------------------------------------------------

# Pinned in every process that checks or times (``pin_precision``): float32 GEMMs in full
# float32 (no TF32), and half-precision GEMMs whose partial sums stay in float32.  torch's
# defaults allow reduced-precision reductions for float16 and bfloat16 on CUDA, where a
# split-K GEMM may then keep partial sums in the half type: the very error the check's
# comparison with torch's own F.linear is there to catch, so torch's F.linear must not do
# it either.  What is checked is what is timed, so the benchmarks run under the same flags.
PINNED = {
    "float32_matmul_precision": "highest",
    "cuda.matmul.allow_tf32": False,
    "cudnn.allow_tf32": False,
    "cuda.matmul.allow_fp16_reduced_precision_reduction": False,
    "cuda.matmul.allow_bf16_reduced_precision_reduction": False,
}


def _backend(path: str):
    owner = torch.backends
    *parents, attr = path.split(".")
    for p in parents:
        owner = getattr(owner, p)
    return owner, attr


def precision_flags() -> dict[str, object]:
    """The flags ``PINNED`` names, as they are now in this process."""
    out: dict[str, object] = {"float32_matmul_precision": torch.get_float32_matmul_precision()}
    for path in PINNED:
        if path == "float32_matmul_precision":
            continue
        owner, attr = _backend(path)
        out[path] = bool(getattr(owner, attr, False))
    return out


def pin_precision() -> None:
    """Set every flag of ``PINNED`` (settable on a CPU build too; it touches no device)."""
    torch.set_float32_matmul_precision(PINNED["float32_matmul_precision"])
    for path, value in PINNED.items():
        if path != "float32_matmul_precision":
            owner, attr = _backend(path)
            setattr(owner, attr, value)


def reduced_precision() -> dict[str, int]:
    """The flags as numbers asv can track: 1 where a GEMM may compute below full precision."""
    flags = precision_flags()
    return {
        "tf32": int(bool(flags["cuda.matmul.allow_tf32"] or flags["cudnn.allow_tf32"]
                         or flags["float32_matmul_precision"] != "highest")),
        "reduced_precision_reduction": int(bool(flags["cuda.matmul.allow_fp16_reduced_precision_reduction"]
                                                or flags["cuda.matmul.allow_bf16_reduced_precision_reduction"])),
    }


# --- is CUDA usable here? --------------------------------------------------------------------------

CUDA_ENV = envvars.CUDA  # "1", or "0: <reason>": decided once, inherited by every child
_PROBE = ("import json, torch\n"
          "try:\n"
          "    torch.zeros(1, device='cuda').add_(1); torch.cuda.synchronize()\n"
          "    print(json.dumps({'ok': True}))\n"
          "except Exception as exc:\n"
          "    print(json.dumps({'ok': False, 'reason': f'{type(exc).__name__}: {exc}'.splitlines()[0][:200]}))\n")


def cuda_unavailable_reason() -> str | None:
    """Why CUDA cannot run cases here (None when it can), decided without initialising CUDA in
    this process, so a fork after it stays safe.

    NVML answers whether a device is there without a CUDA context; but NVML may be missing
    (torch then falls back to the runtime, which does initialise CUDA in the caller) and a
    device NVML sees may still not start (a driver and runtime that do not match).  So
    where torch is built with CUDA, a child process runs one kernel, once: the answer is
    kept in ``$LINBENCH_CUDA`` for this process and every process it starts.
    """
    known = os.environ.get(CUDA_ENV)
    if known is not None:
        return None if known.strip() == "1" else (known.partition(":")[2].strip() or "CUDA unusable")
    if not torch.backends.cuda.is_built():
        reason = f"torch {torch.__version__} is built without CUDA"
    else:
        reason = _probe_in_child()
    os.environ[CUDA_ENV] = "1" if reason is None else f"0: {reason}"
    return reason


def _probe_in_child() -> str | None:
    env = dict(os.environ, PYTORCH_NVML_BASED_CUDA_CHECK="1")
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=180, env=env,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the CUDA probe could not run: {type(exc).__name__}: {exc}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        err = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return f"the CUDA probe failed: {err[:200]}"
    got = json.loads(lines[-1])
    return None if got.get("ok") else f"CUDA does not start: {got.get('reason', '?')}"


# --- the GPU's facts, recorded with the results ---------------------------------------------------


def device_facts(index: int = 0) -> dict[str, object]:
    """Model, compute capability, multiprocessors, memory, L2, CUDA runtime and driver of a GPU
    (initialises CUDA: call it in a case's own process, never before a fork)."""
    p = torch.cuda.get_device_properties(index)
    driver = None
    try:
        driver = int(torch._C._cuda_getDriverVersion())  # e.g. 12080 for CUDA 12.8's driver API
    except (AttributeError, RuntimeError):
        pass
    return {"name": p.name, "capability": float(f"{p.major}.{p.minor}"), "multiprocessors": p.multi_processor_count,
            "memory_gib": round(p.total_memory / 2**30, 1), "l2_bytes": int(getattr(p, "L2_cache_size", 0) or 0),
            "cuda_runtime": float(torch.version.cuda or 0), "cuda_driver": driver}


def cache_key_parts(device: str) -> list[str]:
    """What a check's outcome depends on besides the sources: the precision flags, and on CUDA
    the GPU, its driver and the CUDA runtime."""
    parts = [json.dumps(precision_flags(), sort_keys=True)]
    if device == "cuda":
        parts.append(json.dumps(device_facts(), sort_keys=True))
    return parts


# --- a call's own device memory -----------------------------------------------------------------


def call_peak_bytes(step: Callable[[], object], *, synchronize: Callable[[], None] | None = None,
                    allocated: Callable[[], int] | None = None, reset_peak: Callable[[], None] | None = None,
                    peak: Callable[[], int] | None = None) -> int:
    """Bytes one call of ``step`` allocates at its peak beyond what was allocated just before it.

    ``max_memory_allocated()`` alone counts everything resident: the case's x, W, b and
    gradients, and cuBLAS's persistent workspace (32 MiB on sm90, another for autograd's
    thread), so every cuBLAS implementation would carry an offset that mul_sum does not.
    The case's first call (in ``bench.prepare``) has already made those workspaces.
    The counters default to torch.cuda's; tests pass their own.
    """
    synchronize = synchronize or torch.cuda.synchronize
    allocated = allocated or torch.cuda.memory_allocated
    reset_peak = reset_peak or torch.cuda.reset_peak_memory_stats
    peak = peak or torch.cuda.max_memory_allocated
    synchronize()
    before = allocated()
    reset_peak()
    step()
    synchronize()
    return max(0, peak() - before)
