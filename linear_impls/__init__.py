"""linbench: every way of computing a linear layer in PyTorch, checked and benchmarked.

Public API::

    import linear_impls

    @linear_impls.register("my_impl", description="x @ W.T + b, written out")
    def my_impl(weight, bias):          # runs once, never timed
        def forward(x):                  # x: (*, in_features) -> (*, out_features)
            return x @ weight.T + bias
        return forward

    linear_impls.names()          # sorted names, built-ins and plugins
    linear_impls.get("f_linear")  # the record; unknown name -> KeyError listing the known names
"""

from . import builtins as _builtins  # noqa: F401  (registers the built-ins)
from .registry import (
    PLUGIN_ERRORS,
    Impl,
    Limits,
    RegistryError,
    get,
    load_plugins,
    names,
    register,
    select,
    unregister,
)

__all__ = [
    "Impl",
    "Limits",
    "PLUGIN_ERRORS",
    "RegistryError",
    "get",
    "load_plugins",
    "names",
    "register",
    "select",
    "unregister",
]

load_plugins()
