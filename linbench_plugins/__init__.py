"""Your implementations, versioned with the harness.

A module here is shipped in linbench's wheel, so asv builds each commit's own
version of it: ``linbench gate`` and ``asv run`` over history then see how *your*
implementation changed, not only the built-ins.  Load one with
``LINEAR_IMPLS_PLUGINS=linbench_plugins.my_module`` (comma-separated for several).
Plugins that live elsewhere still work through entry points or
``LINEAR_IMPLS_PLUGINS`` and ``PYTHONPATH``, but asv then benchmarks the same copy
at every commit.
"""
