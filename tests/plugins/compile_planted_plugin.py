"""Implementations that are right in eager mode and show their faults under torch.compile."""
import torch

import linear_impls


@linear_impls.register_forward(description="x @ W.T, after asking the input for a Python number (a graph break)")
def graph_break_linear(x, weight):
    if x.abs().sum().item() < 0:  # .item() leaves the graph: dynamo breaks it here
        raise ValueError("unreachable")
    return x @ weight.T


@linear_impls.register_forward(description="x @ W.T + b, but drops the bias when compiled")
def compile_wrong(x, weight, bias):
    y = x @ weight.T
    if torch.compiler.is_compiling() or bias is None:
        return y
    return y + bias
