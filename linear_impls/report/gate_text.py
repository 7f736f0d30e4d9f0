"""The gate's verdict as text (``linbench gate``'s output), beside the page's renderers:
``linear_impls.gate`` measures and judges, and holds no text."""

from __future__ import annotations

from .. import gate
from ..units import fmt


def format_result(r: gate.GateResult) -> str:
    """What ``linbench gate`` prints: its verdict, the broken checks and the cases that changed."""
    lines = [f"linbench gate: BASE {r.base[:8]} -> HEAD {r.head[:8]}, factor {r.factor:g} "
             f"(instructions {r.instructions_factor:g}), {r.rounds} interleaved rounds, {r.seconds:.0f} s"]
    if r.broken_checks:
        lines.append(f"\nCORRECTNESS: {len(r.broken_checks)} checks pass at BASE and fail at HEAD")
        for b in r.broken_checks:
            lines.append(f"  {b.impl:<18} {b.check:<8} {b.dtype:<8} {b.device:<4} {b.case:<26} {b.reason}")
    shown = [c for c in r.changes if c.verdict != "same"]
    order = {"broke": 0, "slower": 1, "failed at both": 2, "n/a at HEAD": 3, "changed": 4, "faster": 5,
             "fixed": 6, "new": 7}
    shown.sort(key=lambda c: (order[c.verdict], -(c.ratio or 0)))
    timed = [c for c in r.changes if c.unit in gate.TIMED_UNITS]
    counted = [c for c in r.changes if c.unit in gate.COUNTED_UNITS and c.base is not None and c.head is not None]
    lines.append(f"\nPERFORMANCE: {len(timed)} timed cases and {len(counted)} instruction counts compared; "
                 "shown: those that changed")
    if shown:
        lines.append(f"  {'verdict':<12} {'ratio':>6} {'p':>8} {'BASE':>9} {'HEAD':>9}  benchmark")
        for c in shown:
            ratio = f"{c.ratio:.3f}" if c.ratio is not None else "-"
            p = f"{c.p:.1e}" if c.p is not None else "-"
            lines.append(f"  {c.verdict:<12} {ratio:>6} {p:>8} {fmt(c.base, c.unit):>9} "
                         f"{fmt(c.head, c.unit):>9}  {c.label}")
            lines.extend(f"  {'':<12} {'':>6} {'':>8} {'':>9} {'':>9}    {f}" for f in c.functions or ())
    n_slow = sum(c.verdict == "slower" for c in r.changes)
    n_broke = sum(c.verdict == "broke" for c in r.changes)
    if r.regressed:
        parts = []
        n_slow_counted = sum(c.verdict == "slower" and c.unit in gate.COUNTED_UNITS for c in r.changes)
        n_slow -= n_slow_counted
        if n_slow:
            parts.append(f"{n_slow} cases slower than {r.factor:g}x (p < {gate.P_THRESHOLD})")
        if n_slow_counted:
            parts.append(f"{n_slow_counted} cases with over {r.instructions_factor:g}x the instructions")
        if n_broke:
            parts.append(f"{n_broke} cases that ran at BASE fail at HEAD")
        if r.broken_checks:
            parts.append(f"{len(r.broken_checks)} correctness checks broken")
        lines.append("\nREGRESSED: " + "; ".join(parts))
    else:
        n_fast = sum(c.verdict == "faster" for c in r.changes)
        lines.append(f"\nOK: nothing regressed ({len(timed)} timed cases"
                     + (f", {n_fast} faster" if n_fast else "") + ")")
    return "\n".join(lines)
