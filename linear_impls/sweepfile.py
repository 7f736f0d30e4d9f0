"""Sweep files: the cases of one model (or any hand-picked set), kept in a user's repository.

``linbench capture`` writes one; a user can also write one by hand.  TOML (or the same keys
in JSON)::

    name = "my_model"                       # letters, digits, '_', '-', '.'
    source = "linbench capture models.py:build --mode forward"   # where it came from (free text)
    modes = ["forward"]                     # optional: forward and/or forward_backward (default both)
    max_call_seconds = 0.25                 # optional: a case estimated slower per call is skipped

    [[case]]
    shape = "8x128x768x3072"                # the sweep's notation: [batch x ...] in x out
    dtype = "float32"                       # optional, default float32
    device = "cpu"                          # optional, default cpu
    bias = true                             # optional, default true
    count = 12                              # calls per model step (default 1)
    modules = ["encoder.layers.0.linear1"]  # optional: who made the calls

A sweep file is a sweep everywhere a built-in's name is (``--sweep FILE``,
``LINBENCH_SWEEP=FILE``).  Its cases run in every mode it lists; a case whose shape, dtype
and device match a built-in sweep's is the same asv case, so their results line up.  Every
case is timed with a bias (the registry's implementations all add one): a bias-less call's
count says so in the file, and the bias is one add per output, small beside the product.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

SUFFIXES = (".toml", ".json")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DEFAULT_MAX_CALL_SECONDS = 0.25
TOP_KEYS = {"name", "source", "modes", "max_call_seconds", "case", "notes"}
CASE_KEYS = {"shape", "dtype", "device", "bias", "count", "modules", "grad_input", "grad_weight"}


class SweepFileError(ValueError):
    """A sweep file that cannot be used; the message names the file and says why, in one line."""


@dataclass(frozen=True)
class FileCase:
    """One case of a sweep file: a linear call and how often one model step makes it."""

    shape: str
    dtype: str = "float32"
    device: str = "cpu"
    bias: bool = True
    count: int = 1
    modules: tuple[str, ...] = ()
    # In a captured training step: of the ``count`` calls, how many needed dX and dW
    # (the first layer's input and frozen weights need none).  None: not recorded.
    grad_input: int | None = None
    grad_weight: int | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.shape, self.dtype, self.device)

    def to_dict(self) -> dict:
        d = {"shape": self.shape, "dtype": self.dtype, "device": self.device, "bias": self.bias,
             "count": self.count, "modules": list(self.modules)}
        if self.grad_input is not None:
            d["grad_input"] = self.grad_input
        if self.grad_weight is not None:
            d["grad_weight"] = self.grad_weight
        return d


@dataclass(frozen=True)
class SweepFile:
    name: str
    cases: tuple[FileCase, ...]
    path: str = ""
    source: str = ""
    modes: tuple[str, ...] = ("forward", "forward_backward")
    max_call_seconds: float = DEFAULT_MAX_CALL_SECONDS
    notes: tuple[str, ...] = field(default=())

    def counts(self) -> dict[tuple[str, str, str], int]:
        """Calls per model step of each (shape, dtype, device); cases listed twice add up."""
        out: dict[tuple[str, str, str], int] = {}
        for c in self.cases:
            out[c.key] = out.get(c.key, 0) + c.count
        return out


def looks_like_file(ref: str) -> bool:
    """Whether a ``--sweep`` value names a file rather than a built-in sweep."""
    return ref.endswith(SUFFIXES) or "/" in ref or Path(ref).is_file()


def load(path: str | Path) -> SweepFile:
    """Read and validate a sweep file; SweepFileError with one line saying what is wrong."""
    from . import sweep  # the shape notation and the known dtypes, devices and modes

    p = Path(path)
    where = str(path)
    if not p.is_file():
        raise SweepFileError(f"sweep file {where}: not found" if not p.exists() else f"sweep file {where}: not a file")
    if p.suffix not in SUFFIXES:
        raise SweepFileError(f"sweep file {where}: expected a .toml or .json file")
    try:
        text = p.read_text()
        data = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepFileError(f"sweep file {where}: cannot be read ({exc})") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise SweepFileError(f"sweep file {where}: not valid {p.suffix[1:].upper()} ({exc})") from None
    if not isinstance(data, dict):
        raise SweepFileError(f"sweep file {where}: expected a table of keys at the top")

    def bad(msg: str) -> SweepFileError:
        return SweepFileError(f"sweep file {where}: {msg}")

    unknown = set(data) - TOP_KEYS
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(TOP_KEYS))}")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise bad(f"'name' must be letters, digits, '_', '-' or '.', got {name!r}")
    if name in sweep.SWEEPS:
        raise bad(f"'name' {name!r} is a built-in sweep's; pick another")
    modes = data.get("modes", list(sweep.MODES))
    if not isinstance(modes, list) or not modes or any(m not in sweep.MODES for m in modes):
        raise bad(f"'modes' must be a list of {', '.join(sweep.MODES)}, got {modes!r}")
    budget = data.get("max_call_seconds", DEFAULT_MAX_CALL_SECONDS)
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
        raise bad(f"'max_call_seconds' must be a positive number, got {budget!r}")
    raw_cases = data.get("case")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise bad("no cases: expected one or more [[case]] tables, each with a 'shape'")
    cases = []
    for i, c in enumerate(raw_cases, 1):
        cases.append(_case(c, f"case {i}", bad))
    source = data.get("source", "")
    notes = data.get("notes", [])
    if not isinstance(source, str):
        raise bad(f"'source' must be text, got {source!r}")
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise bad(f"'notes' must be a list of text, got {notes!r}")
    return SweepFile(name, tuple(cases), str(p.resolve()), source, tuple(dict.fromkeys(modes)), float(budget),
                     tuple(notes))


def _case(c: object, label: str, bad) -> FileCase:
    from . import sweep

    if not isinstance(c, dict):
        raise bad(f"{label}: expected a table with a 'shape', got {c!r}")
    unknown = set(c) - CASE_KEYS
    if unknown:
        raise bad(f"{label}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(CASE_KEYS))}")
    if "shape" not in c:
        raise bad(f"{label}: no 'shape'")
    try:
        shape = sweep.parse_shape(c["shape"]).id
    except sweep.ShapeError as exc:
        raise bad(f"{label}: {exc}") from None
    dtype = c.get("dtype", "float32")
    if dtype not in sweep.DTYPES:
        raise bad(f"{label}: unknown dtype {dtype!r}; known: {', '.join(sweep.DTYPES)}")
    device = c.get("device", "cpu")
    if device not in sweep.DEVICES:
        raise bad(f"{label}: unknown device {device!r}; known: {', '.join(sweep.DEVICES)}")
    bias = c.get("bias", True)
    if not isinstance(bias, bool):
        raise bad(f"{label}: 'bias' must be true or false, got {bias!r}")
    count = c.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise bad(f"{label}: 'count' must be a whole number of calls per step, at least 1, got {count!r}")
    modules = c.get("modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise bad(f"{label}: 'modules' must be a list of text, got {modules!r}")
    grads = {}
    for k in ("grad_input", "grad_weight"):
        v = c.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= count):
            raise bad(f"{label}: {k!r} must be a whole number from 0 to its count {count}, got {v!r}")
        grads[k] = v
    return FileCase(shape, dtype, device, bias, count, tuple(modules), **grads)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def dumps(sf: SweepFile, header: str = "") -> str:
    """The file's text: TOML, one ``[[case]]`` per case, readable and editable by hand."""
    lines = [f"# {h}" if h else "#" for h in header.splitlines()] if header else []
    lines += [f"name = {_toml_value(sf.name)}", f"source = {_toml_value(sf.source)}",
              f"modes = {_toml_value(list(sf.modes))}", f"max_call_seconds = {_toml_value(sf.max_call_seconds)}"]
    if sf.notes:
        lines.append(f"notes = {_toml_value(list(sf.notes))}")
    for c in sf.cases:
        lines.append("")
        lines.append("[[case]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in c.to_dict().items()]
    return "\n".join(lines) + "\n"


def dump_json(sf: SweepFile) -> str:
    return json.dumps({"name": sf.name, "source": sf.source, "modes": list(sf.modes),
                       "max_call_seconds": sf.max_call_seconds, "notes": list(sf.notes),
                       "case": [c.to_dict() for c in sf.cases]}, indent=1) + "\n"
