"""linbench: every way of computing a linear layer in PyTorch, checked and benchmarked.

Public API::

    import linear_impls

    @linear_impls.register_forward(description="x @ W.T, the bias added by linbench")
    def my_impl(x, weight):              # x: (*, in_features) -> (*, out_features)
        return x @ weight.T

    @linear_impls.register(description="the weight transposed once, when built")
    def my_prepared(weight, bias):       # runs once, never timed
        wt = weight.T                    # a view: it follows in-place updates of the weight
        def forward(x):
            return x @ wt + bias
        return forward

    @linear_impls.register_module(description="my own layer, built like nn.Linear")
    class MyLinear(nn.Linear):           # cls(in_features, out_features, bias=True)
        def forward(self, x):            # checked for outputs, and as a drop-in for nn.Linear
            return x @ self.weight.T + self.bias

    linear_impls.names()          # sorted names, built-ins and plugins
    linear_impls.get("f_linear")  # the record; unknown name -> KeyError listing the known names
"""

from . import builtins as _builtins  # noqa: F401  (registers the built-ins)
from .registry import (
    PLUGIN_ERRORS,
    DropInError,
    Impl,
    Limits,
    RegistryError,
    baseline,
    get,
    load_plugins,
    names,
    register,
    register_forward,
    register_module,
    select,
    unregister,
)

__all__ = [
    "DropInError",
    "Impl",
    "Limits",
    "PLUGIN_ERRORS",
    "RegistryError",
    "get",
    "load_plugins",
    "baseline",
    "names",
    "register",
    "register_forward",
    "register_module",
    "select",
    "unregister",
]

load_plugins()
# $LINBENCH_COMPILE's compiled variants, after the plugins: a plugin can be compiled too.
from . import compiled as _compiled  # noqa: E402

_compiled.register_from_env()
