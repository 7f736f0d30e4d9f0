"""A correct third-party implementation, loaded through $LINEAR_IMPLS_PLUGINS."""

import torch

import linear_impls


@linear_impls.register("plugin_tensordot", description="torch.tensordot from a plugin <b>bold?</b>")
def plugin_tensordot(weight, bias):
    def forward(x):
        y = torch.tensordot(x, weight, dims=([-1], [1]))
        return y if bias is None else y + bias

    return forward
