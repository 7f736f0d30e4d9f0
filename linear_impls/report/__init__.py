"""The summary page ``reports/index.html``: one self-contained HTML file from asv results,
pytest-benchmark runs and the checks file.

The package is a pipeline, each stage in its own module:

* ``load``: every source as rows of one tidy table (``load.MEASUREMENT``: a row per
  file, benchmark and case with its value, status and statistics) and a table of
  the files (``load.FILE``); asv results are read through ``linear_impls.results``;
* ``analysis``: pure pandas on that table (latest commits, rates, speedups, missing
  cases, peaks, check counts, run-against-run comparisons);
* ``plots``: the roofline and history charts as plain SVG;
* ``render``: Jinja2 templates (``templates/``, autoescaped) and ``style.css``.

The history's changes come from ``linear_impls.history``, slower/faster from
``linear_impls.verdict``, every number from ``linear_impls.units``.  No network, no
JavaScript, no external CSS: the page opens from ``file://``.
"""

from .build import ReportSummary, build_report
from .load import Measurements, ReportError, load_checks, load_models, load_pytest_benchmark, load_results

__all__ = ["Measurements", "ReportError", "ReportSummary", "build_report", "load_checks", "load_models",
           "load_pytest_benchmark", "load_results"]
