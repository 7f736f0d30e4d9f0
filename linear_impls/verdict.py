"""The one rule that calls a change slower, faster or the same.

Used by ``linbench gate`` (two commits, many samples each), the summary page's history
(a step found by asv's step detection over a case's commits) and the page's
pytest-benchmark comparison (two runs).  Each brings its own evidence that a
difference is real (asv's Mann-Whitney test and every process agreeing, a step larger
than the scatter on either side, or a deterministic count that needs none); the rule
is the same everywhere: the new value over the old beyond ``factor`` either way, with
that evidence.  The factor is symmetric in log space: ``factor`` 1.10 calls a case
slower above 1.10 and faster below 1/1.10.
"""

from __future__ import annotations

import math

SLOWER, FASTER, SAME = "slower", "faster", "same"


def classify(old: float, new: float, factor: float, *, significant: bool = True) -> str:
    """``slower``, ``faster`` or ``same`` for a value that went from ``old`` to ``new``.

    A value is a cost (time, instructions, bytes, a ratio of times): larger is slower.
    ``significant``: the caller's statistics say the difference is not noise.
    """
    if not significant or not (old > 0 and new >= 0) or not math.isfinite(old) or not math.isfinite(new):
        return SAME
    ratio = new / old
    if ratio > factor:
        return SLOWER
    if ratio < 1 / factor:
        return FASTER
    return SAME
