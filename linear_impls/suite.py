"""The catalogue of the asv suite: each metric defined once.

A metric is one asv benchmark of ``benchmarks/bench_linear.py`` that measures cases: its
name as asv spells it (``Class.method``; asv prefixes the module), what the report calls
its kind, the unit it is written in, its parameter names and the parameters its class fixes,
the family of ``asv run -b`` patterns that selects it (``asvconf.case_patterns``, and so the chunk
that runs it: ``asvrun.CHUNK_GROUPS``), and whether and beyond what asv threshold it decides
the history (asv.conf.json's ``regressions_thresholds``).

The report's tables of kinds, units and parameter names are derived from it, the history's
deciding metrics and the gate's metric names too, and ``tests/test_suite.py`` checks it
against the benchmarks asv discovers and against asv.conf.json, so a new ``track_`` method
that is not catalogued fails a test instead of being labelled "memory" in silence.

Benchmarks that record the run's environment or the machine's ceilings rather than a case
(``Environment*``, ``Ceilings``, ``MemoryBandwidth``, ``CacheBandwidth``) are listed in
``BOOKKEEPING``: the report reads them into the files' and the ceilings' tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CASE_PARAMS = ("impl", "shape", "dtype", "device", "mode")


@dataclass(frozen=True)
class Metric:
    name: str  # "Class.method"
    kind: str  # the report's ``kind`` column
    unit: str  # units.fmt's unit
    params: tuple[str, ...]  # asv's param_names, in order
    fixed: dict = field(default_factory=dict)  # what the class fixes: {"mode": "forward"}
    family: str = ""  # asvconf.case_patterns' key: which -b pattern (and chunk) selects it
    # asv's regressions_thresholds for it (asv.conf.json), and whether the history decides with it.
    threshold: float | None = None
    decides: bool = False
    # How the page names its kind, and one line on what it measures and what it cannot see.
    label: str = ""
    about: str = ""
    # Drawn in the history and the side-by-side tables (a deciding metric always is).
    drawn: bool = False

    @property
    def asv_name(self) -> str:
        return f"bench_linear.{self.name}"

    @property
    def cls(self) -> str:
        return self.name.split(".")[0]


_TIMED = ("impl", "shape", "dtype", "device")
_MEMORY = ("impl", "shape", "dtype", "mode")
# Wall time is drawn, never decides: it moves 20-50% between runs on a shared machine.
_WALL = 1000.0

_WALL_TIME = {"label": "wall time per call", "drawn": True, "about":
              "what a user pays per call, but on a shared runner it moves 20-50% between runs of one commit: "
              "drawn with that band, never used to call a change."}

METRICS = (
    Metric("Instructions.track_instructions", "instructions", "instructions", CASE_PARAMS, {}, "Instructions",
           0.02, True, label="instructions per call", about=(
               "what the CPU executes per call, counted under callgrind: the same in every run of a commit. "
               "Blind to memory stalls and cache misses, to the AVX-512 paths (valgrind shows the program none) "
               "and to the GPU.")),
    Metric("RelativeToTorch.track_ratio", "ratio", "ratio", CASE_PARAMS, {}, "RelativeToTorch", 0.2, True,
           label="time over F.linear, one thread", about=(
               "the call's time over torch's own F.linear on the same inputs, in alternating ~2 ms blocks in one "
               "process on one thread, so the machine's slow spells cancel. Sees memory effects and the GPU; "
               "blind to a change in torch itself (F.linear moves with it) and to changes under its noise "
               "(about 10%).")),
    Metric("Inference.time_forward", "time", "seconds", _TIMED, {"mode": "forward"}, "Timed", _WALL, **_WALL_TIME),
    Metric("Training.time_forward_backward", "time", "seconds", _TIMED, {"mode": "forward_backward"}, "Timed",
           _WALL, **_WALL_TIME),
    Metric("Speedup.track_speedup", "speedup", "speedup", CASE_PARAMS, {}, "Speedup", _WALL),
    Metric("HostMemory.peakmem_step", "memory", "bytes", _MEMORY, {"device": "cpu"}, "HostMemory", 0.1),
    Metric("DeviceMemory.track_peak_bytes", "memory", "bytes", _MEMORY, {"device": "cuda"}, "DeviceMemory", 0.1),
    Metric("Dispatch.track_ops", "ops", "count", CASE_PARAMS, {}, "Dispatch"),
    Metric("CompileCost.track_cold_seconds", "compile_cold", "seconds", CASE_PARAMS, {}, "Compiled"),
    Metric("CompileCost.track_warm_seconds", "compile_warm", "seconds", CASE_PARAMS, {}, "Compiled"),
    Metric("CompileCost.track_graphs", "graphs", "count", CASE_PARAMS, {}, "Compiled"),
    Metric("CompileCost.track_graph_breaks", "graph_breaks", "count", CASE_PARAMS, {}, "Compiled"),
)
# The first metric of a kind (time: Inference's; memory: HostMemory's): a dict comprehension
# would keep the last.
BY_KIND: dict[str, Metric] = {}
for _m in METRICS:
    BY_KIND.setdefault(_m.kind, _m)
BOOKKEEPING = ("Environment", "EnvironmentPrecision", "EnvironmentGpu", "Ceilings", "MemoryBandwidth",
               "CacheBandwidth")


def of(name: str) -> Metric | None:
    """The metric of an asv benchmark name (``bench_linear.Inference.time_forward`` or any module
    prefix); None for one that is not catalogued."""
    key = ".".join(name.split(".")[-2:])
    # Looked up when asked, as every table derived from METRICS: a test may add a metric.
    return next((m for m in METRICS if m.name == key), None)


def drawn() -> tuple[Metric, ...]:
    """The first metric of each kind the history draws (deciding or drawn), in the catalogue's order."""
    out: dict[str, Metric] = {}
    for m in METRICS:
        if m.decides or m.drawn:
            out.setdefault(m.kind, m)
    return tuple(out.values())


def wall_time(mode: str) -> Metric:
    """The wall-time metric timing ``mode`` (one class per mode; ``BY_KIND["time"]`` is the first).

    Everything outside the suite names a metric this way or by ``BY_KIND``, so that its asv
    name is spelled here and in its benchmark only."""
    return next(m for m in METRICS if m.kind == "time" and m.fixed["mode"] == mode)


def thresholds() -> dict[str, float]:
    """asv.conf.json's ``regressions_thresholds`` as the catalogue gives them: one regex per
    threshold, over the classes that share it."""
    by_value: dict[float, list[str]] = {}
    for m in METRICS:
        if m.threshold is not None and m.cls not in by_value.get(m.threshold, []):
            by_value.setdefault(m.threshold, []).append(m.cls)
    out = {}
    for value, classes in by_value.items():
        alt = classes[0] if len(classes) == 1 else "(" + "|".join(classes) + ")"
        out[f"bench_linear\\.{alt}\\."] = value
    return out
