"""Replaces the built-in f_linear with a copy that sleeps 1 ms per call.

A planted slowdown for the pytest-benchmark flow: the same name, so a saved run
of the real f_linear compares against it.
"""

import time

import linear_impls
from linear_impls import builtins

linear_impls.unregister("f_linear")


@linear_impls.register("f_linear", description="F.linear, planted 1 ms slower", expression="F.linear(x, W, b)")
def f_linear(weight, bias):
    real = builtins.f_linear(weight, bias)

    def forward(x):
        time.sleep(1e-3)
        return real(x)

    return forward
