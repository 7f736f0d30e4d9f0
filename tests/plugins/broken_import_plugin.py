"""A plugin that fails while importing: must be reported, never take the built-ins down."""

import linear_impls


@linear_impls.register("half_registered", description="registered before the import fails")
def half_registered(weight, bias):
    return lambda x: x @ weight.T


raise ImportError("no module named 'fancy_kernels'")
