"""asv's side of the suite: asv.conf.json read with asv's own loader, the ``asv run`` command
line, and the ``-b`` patterns that select a sweep's cases (per benchmark family of the
catalogue, ``suite.Metric.family``).  ``asvrun`` (``linbench run``) and ``gate`` build their
asv invocations from here.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from . import compiled, registry, suite, sweep


def load(path: Path) -> dict:
    """An asv.conf.json as asv reads it (JSON with // comments)."""
    from asv import util

    return util.load_json(str(path), js_comments=True)


def executable() -> str:
    """The asv of this Python's environment."""
    return str(Path(sys.executable).parent / "asv")


def run_command(spec: str, patterns, *options: str, config: Path | None = None) -> list[str]:
    """``asv [--config C] run SPEC --record-samples OPTIONS -b P ...``: samples always kept (the
    speedups' are one median per process; the gate tests significance on them)."""
    cmd = [executable(), *(["--config", str(config)] if config else []), "run", spec, "--record-samples", *options]
    for p in patterns:
        cmd += ["-b", p]
    return cmd


# An implementation parameter that is not a compiled variant: those run on the sweep's
# compile subset only, and anywhere else each would cost a process that does nothing.
# Every compiled prefix ("compiled_ro_" too) starts with the default mode's.
_COMPILED_PREFIX = re.escape(compiled.PREFIX["default"])
EAGER_IMPL = rf"'(?!{_COMPILED_PREFIX})[^']+'"
COMPILED_IMPL = rf"'{_COMPILED_PREFIX}[^']+'"


def param_alternatives(values) -> str:
    """A regex group matching any of ``values`` as asv writes a param in a benchmark's name (its repr)."""
    return "(?:" + "|".join(re.escape(repr(v)) for v in values) + ")"


def _timed_classes(modes) -> str:
    """The wall-time benchmarks' classes (``Inference|Training``) of ``modes``, from the catalogue."""
    return "|".join(m.cls for m in suite.METRICS if m.kind == "time" and m.fixed.get("mode") in modes)


def _select(family: str, params: str) -> str:
    """The pattern of ``family``: any method of the catalogue's classes in it, with ``params``."""
    classes = "|".join(dict.fromkeys(m.cls for m in suite.METRICS if m.family == family))
    return rf"^bench_linear\.(?:{classes})\.\w+\({params}\)$"


def case_patterns(sweep_def: sweep.Sweep, devices: list[str] | None = None,
                 impls: list[str] | None = None) -> dict[str, str]:
    """``asv run -b`` patterns selecting a sweep's cases, per benchmark family, so others do not
    even start a process: ``{"Environment", "Timed" (Inference and Training),
    "RelativeToTorch", "Instructions", "Dispatch", "HostMemory", "DeviceMemory", "Ceilings",
    "Compiled" (the compiled variants' timings, speedups and compile cost), "CompiledRatio"
    (their ratios to F.linear): pattern}``, each
    present where the sweep has such cases.

    asv matches them against ``name(param0, param1, ...)`` with each param's repr.
    ``impls``: only these implementations (the ceilings, which have none, stay).
    """
    devices = devices or sweep.available_devices()
    alt = param_alternatives
    shapes, dtypes = alt(sweep_def.shapes), alt(sweep_def.dtypes)
    mem_dtypes = [d for d in sweep_def.dtypes if d in sweep_def.memory_dtypes]
    eager, compiled_impl = EAGER_IMPL, COMPILED_IMPL
    if "cuda" not in devices:  # reduce-overhead variants (CUDA graphs) run on CUDA only
        compiled_impl = rf"'(?!{re.escape(compiled.PREFIX['reduce-overhead'])}){_COMPILED_PREFIX}[^']+'"
    # Implementations that are checked but never timed do not even start a process.
    untimed = [n for n in registry.names() if registry.get(n).untimed]
    if impls is None and untimed:
        eager = rf"(?!{alt(untimed)}[,)]){EAGER_IMPL}"
    if impls is not None:
        impls = [i for i in impls if i not in untimed]
        is_compiled = re.compile(COMPILED_IMPL).fullmatch
        # (?!) matches nothing: a family none of the chosen implementations belongs to.
        eager = alt([i for i in impls if not is_compiled(repr(i))]) if impls else "(?!)"
        chosen_compiled = [i for i in impls if is_compiled(repr(i))]
        compiled_impl = alt(chosen_compiled) if chosen_compiled else "(?!)"
    # A sweep file may run one mode only: the other's cases do not even start a process.
    sweep_modes = sweep_def.modes
    timed_classes = _timed_classes(sweep_modes)
    modes_alt = alt(sweep_modes)
    patterns = {"Environment": r"^bench_linear\.Environment(?:Gpu|Precision)?\.",
                "Timed": rf"^bench_linear\.(?:{timed_classes})\.\w+\({eager}, {shapes}, {dtypes}, {alt(devices)}\)$"}
    # The metrics a history can trust on a shared machine: the interleaved ratio to
    # F.linear, and (CPU, in the sweep's instruction dtypes) instructions per call.
    patterns["RelativeToTorch"] = \
        _select("RelativeToTorch", f"{eager}, {shapes}, {dtypes}, {alt(devices)}, {modes_alt}")
    # The first screen's speedups: each implementation against the baseline, interleaved.
    speedup_dtypes = [d for d in sweep_def.dtypes if d in sweep_def.speedup_dtypes]
    if speedup_dtypes:
        patterns["Speedup"] = \
            _select("Speedup", f"{eager}, {shapes}, {alt(speedup_dtypes)}, {alt(devices)}, {modes_alt}")
    compile_dtypes = [d for d in sweep_def.dtypes if d in sweep_def.compile_dtypes]
    if sweep_def.compile_shapes and compile_dtypes:
        cases = f"{compiled_impl}, {alt(sweep_def.compile_shapes)}, {alt(compile_dtypes)}, {alt(devices)}"
        timed = _timed_classes(sweep_def.compile_modes)
        modes = alt(sweep_def.compile_modes)
        patterns["Compiled"] = (rf"^bench_linear\.(?:(?:{timed})\.\w+\({cases}\)"
                                rf"|(?:CompileCost|Speedup)\.\w+\({cases}, {modes}\))$")
        # Their ratios to F.linear, for the history.
        patterns["CompiledRatio"] = _select("RelativeToTorch", f"{cases}, {modes}")
    counted = [d for d in sweep_def.dtypes if d in sweep_def.instruction_dtypes]
    if counted and "cpu" in devices:
        patterns["Instructions"] = \
            _select("Instructions", f"{eager}, {shapes}, {alt(counted)}, 'cpu', {modes_alt}")
    if counted:
        # What each case dispatches to, in the dtypes whose instructions are counted (a
        # dispatch seldom depends on the dtype; tracing costs a process per case in asv).
        patterns["Dispatch"] = \
            _select("Dispatch", f"{eager}, {shapes}, {alt(counted)}, {alt(devices)}, {modes_alt}")
    if mem_dtypes and "cpu" in devices:
        patterns["HostMemory"] = \
            _select("HostMemory", f"{eager}, {shapes}, {alt(mem_dtypes)}, {modes_alt}")
    # The roofline's ceilings: the compute peak in each of the sweep's dtypes on each device;
    # the bandwidth, which has no dtype, with float32's (so a sweep chunked per dtype
    # measures it once).
    patterns["Ceilings"] = rf"^bench_linear\.Ceilings\.\w+\({dtypes}, {alt(devices)}\)$"
    if "float32" in sweep_def.dtypes:
        patterns["Ceilings"] = rf"^bench_linear\.(?:Ceilings\.\w+\({dtypes}, {alt(devices)}\)" \
                               rf"|MemoryBandwidth\.\w+\({alt(devices)}\)" \
                               + (r"|CacheBandwidth\.\w+\('cuda'\)" if "cuda" in devices else "") + ")$"
    if mem_dtypes and "cuda" in devices:
        patterns["DeviceMemory"] = \
            _select("DeviceMemory", f"{eager}, {shapes}, {alt(mem_dtypes)}, {modes_alt}")
    return patterns


def all_patterns(sweep_def: sweep.Sweep, devices: list[str] | None = None) -> list[str]:
    """Every pattern of :func:`case_patterns`, as a list for ``asv run -b``."""
    return list(case_patterns(sweep_def, devices).values())
