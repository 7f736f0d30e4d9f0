"""valgrind's callgrind from Python: the command line, the client requests a worker
sends from inside it, and the dumps it leaves.

``instructions`` decides what to count and runs the worker; this module is only the
interface to the tool, so it can be read against valgrind's own documentation
(callgrind.h for the requests, "Callgrind Format Specification" for the dumps).
"""

from __future__ import annotations

import ctypes
import mmap
import re
import subprocess
from pathlib import Path


def command(out_prefix: Path) -> list[str]:
    """valgrind's command line, before the program's: instrumentation and collection start off
    (the worker switches them on), and each dump goes to ``out_prefix.<n>``."""
    return ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--instr-atstart=no",
            f"--callgrind-out-file={out_prefix}", "--dump-instr=no", "--dump-line=no", "--quiet"]


def version() -> str:
    """``valgrind --version``'s answer, kept with the counts it took."""
    out = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    return out.stdout.strip()


# --- client requests ---------------------------------------------------------------------------

# valgrind recognises a client request by a magic instruction sequence (valgrind.h's
# __SPECIAL_INSTRUCTION_PREAMBLE, four rotations of rdi by 128 bits in all, then
# xchg rbx,rbx) with rax pointing at the request's six words; the answer comes back in
# rdx.  Natively the sequence does nothing and returns the default, 0.  Written as
# machine code so no compiler or header is needed:
#   mov rax,rdi; xor edx,edx; rol rdi,3; rol rdi,13; rol rdi,61; rol rdi,51;
#   xchg rbx,rbx; mov rax,rdx; ret
_REQUEST_CODE = bytes.fromhex("4889f831d248c1c70348c1c70d48c1c73d48c1c7334887db4889d0c3")
_RUNNING_ON_VALGRIND = 0x1001
_CALLGRIND_BASE = (ord("C") << 24) | (ord("T") << 16)  # VG_USERREQ_TOOL_BASE('C','T')
_TOGGLE_COLLECT = _CALLGRIND_BASE + 2
_DUMP_STATS_AT = _CALLGRIND_BASE + 3
_START_INSTRUMENTATION = _CALLGRIND_BASE + 4


class ClientRequests:
    """callgrind's client requests (callgrind.h) on x86-64, callable from Python."""

    def __init__(self) -> None:
        self._page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._page.write(_REQUEST_CODE)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
        self._call = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)(address)

    def request(self, code: int, arg: int = 0) -> int:
        words = (ctypes.c_uint64 * 6)(code, arg, 0, 0, 0, 0)
        return self._call(ctypes.addressof(words))

    def running_on_valgrind(self) -> bool:
        return self.request(_RUNNING_ON_VALGRIND) > 0

    def start_instrumentation(self) -> None:
        self.request(_START_INSTRUMENTATION)

    def toggle_collect(self) -> None:
        self.request(_TOGGLE_COLLECT)

    def dump(self, description: str) -> None:
        text = ctypes.create_string_buffer(description.encode())
        self.request(_DUMP_STATS_AT, ctypes.addressof(text))


# --- dumps ---------------------------------------------------------------------------------------

_NAME_REF = re.compile(r"^\((\d+)\)(?: (.*))?$")


def parse_dump(path: Path) -> tuple[str, int, dict[str, int]]:
    """One callgrind dump: (its description, total instructions, self instructions per function).

    Reads callgrind's format (valgrind's docs, "Callgrind Format Specification"):
    ``fn=`` opens a function (names compressed as ``(id) name`` then ``(id)``), a
    cost line after ``calls=`` is the callee's inclusive cost and is not the
    caller's own, and every other cost line is.  Positions are ignored.
    """
    desc, total = "", None
    names: dict[str, str] = {}
    functions: dict[str, int] = {}
    current = None
    after_call = False
    n_positions = 1  # "positions: line" unless the header says otherwise
    with open(path, errors="replace") as f:
        for line in f:
            c = line[0] if line else ""
            if c.isdigit() or c in "+-*":
                if after_call:
                    after_call = False
                    continue
                parts = line.split()
                if len(parts) > n_positions and current is not None:
                    functions[current] = functions.get(current, 0) + int(parts[n_positions])
            elif line.startswith("positions:"):
                n_positions = len(line.split()) - 1
            elif line.startswith("fn="):
                current = _name(line[3:].rstrip("\n"), names)
            elif line.startswith("cfn="):
                _name(line[4:].rstrip("\n"), names)  # defines the id for later fn= lines
            elif line.startswith("calls="):
                after_call = True
            elif line.startswith("desc: Trigger: Client Request: "):
                desc = line.removeprefix("desc: Trigger: Client Request: ").strip()
            elif line.startswith("totals:") or line.startswith("summary:"):
                total = int(line.split()[1])
    if total is None:
        total = sum(functions.values())
    return desc, total, {k: v for k, v in functions.items() if v}


def _name(text: str, names: dict[str, str]) -> str:
    m = _NAME_REF.match(text)
    if not m:
        return text
    ident, name = m.groups()
    if name is not None:
        names[ident] = name
        return name
    return names.get(ident, f"({ident})")


def iter_dumps(run_dir: Path):
    """(description, total, functions) of every numbered dump the worker left in ``run_dir``."""
    def number(p: Path) -> int:
        tail = p.name.rsplit(".", 1)[-1]
        return int(tail) if tail.isdigit() else -1

    for path in sorted(run_dir.glob("callgrind.out.*"), key=number):
        if number(path) > 0:
            yield parse_dump(path)
