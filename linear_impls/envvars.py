"""Every ``LINBENCH_*`` environment variable, named once: what it means, who sets it, who reads it.

They are how a choice crosses into processes linbench does not start itself (asv's benchmark
processes, the speedup and callgrind workers, the checks' workers).  Each module that reads one
takes its name from here; ``tests/test_suite.py`` fails on a ``LINBENCH_*`` name spelled in the
source and not listed below.  (``benchmarks/bench_linear.py`` spells a few itself: asv runs it
against older commits, whose ``linear_impls`` may predate this module.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Var:
    name: str
    meaning: str
    set_by: str
    read_by: str


SWEEP = "LINBENCH_SWEEP"
THREADS = "LINBENCH_THREADS"
SELECT = "LINBENCH_SELECT"
INSTRUCTIONS_SELECT = "LINBENCH_INSTRUCTIONS_SELECT"
PLUGIN_PATH = "LINBENCH_PLUGIN_PATH"
COMPILE = "LINBENCH_COMPILE"
RATIO_SECONDS = "LINBENCH_RATIO_SECONDS"
SPEEDUP_PROCESSES = "LINBENCH_SPEEDUP_PROCESSES"
CHECK_CACHE = "LINBENCH_CHECK_CACHE"
GATE_CACHE = "LINBENCH_GATE_CACHE"
CALLGRIND_DIR = "LINBENCH_CALLGRIND_DIR"
DISPATCH_DIR = "LINBENCH_DISPATCH_DIR"
CUDA = "LINBENCH_CUDA"
REQUIRE_CUDA = "LINBENCH_REQUIRE_CUDA"

# One variable a row: its constant above | what it means | who sets it | who reads it.
# A row goes on over the lines indented under it.
_TABLE = """
SWEEP | the sweep: a built-in's name or a sweep file's path (default: default) | linbench run, the gate, the
    user | sweep.current_sweep, every benchmark
THREADS | the thread count every case runs at | asv.conf.json's matrix, the gate | sweep.thread_count
SELECT | a regex over asv names: the cases a setup_cache's workers measure (the speedups, the op traces),
    which cannot see -b | linbench run per chunk, the gate | bench_linear
INSTRUCTIONS_SELECT | a regex over asv names: the cases counted under callgrind | linbench run (--resume,
    --impl), the gate (--bench) | bench_linear.Instructions
PLUGIN_PATH | folders to import plugins from, inside asv's environments | linbench run, the gate (from
    LINEAR_IMPLS_PLUGINS' folders) | registry.load_plugins
COMPILE | the torch.compile'd variants to register (names or all) | linbench check --compile, the user |
    compiled.register_from_env
RATIO_SECONDS | seconds of ratio blocks per case and round | the gate (0.25) | bench_linear.RelativeToTorch
SPEEDUP_PROCESSES | worker processes per speedup case (default 4) | benchmarks/speedup_agreement.py |
    bench.SPEEDUP_PROCESSES
CHECK_CACHE | where check outcomes are remembered ('off': nowhere) | the user, the callgrind worker |
    bench.check_cache_dir
GATE_CACHE | the check cache's name before 'gate' was 'check' (still read) | older setups |
    bench.check_cache_dir
CALLGRIND_DIR | where per-function instruction counts are kept | linbench run, the gate |
    bench_linear.Instructions
DISPATCH_DIR | where op traces are kept | linbench run, the gate | bench_linear.Dispatch
CUDA | whether CUDA runs here, decided once and inherited ('1' or '0: reason') | gpu.cuda_unavailable_reason |
    gpu.cuda_unavailable_reason in child processes
REQUIRE_CUDA | '1': the CUDA tests fail, not skip, where CUDA is missing | benchmarks/gpu_proof.sh |
    tests/test_cuda.py
"""


def _rows(text: str) -> list[list[str]]:
    rows: list[str] = []
    for line in text.strip().splitlines():
        if line.startswith(" ") and rows:
            rows[-1] += " " + line.strip()
        else:
            rows.append(line)
    return [[field.strip() for field in row.split("|")] for row in rows]


VARS = tuple(Var(globals()[const], meaning, set_by, read_by) for const, meaning, set_by, read_by in _rows(_TABLE))
NAMES = frozenset(v.name for v in VARS)
