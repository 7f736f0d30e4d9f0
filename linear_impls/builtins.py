"""The built-in implementations: each is the expression a user would write.

Every factory receives ``weight`` (out_features, in_features) and ``bias``
(out_features,) or None as leaf ``nn.Parameter``s and returns ``forward(x)`` for
``x`` of shape (*, in_features).  Whatever can be prepared once (a module, a view)
is prepared in the factory, outside the timed closure.  They are written as full
factories, not with ``register_forward``'s short form, so that what is timed is the
expression alone, without the extra Python call the short form adds.  Module
implementations (``register_module``: nn.Linear itself and two hand-made layers) are
classes built like nn.Linear; the drop-in checks (``dropin.py``) look at them as modules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Limits, register, register_module

# nn.Linear itself: built as a user builds it, then given the case's parameters.
register_module("nn_linear", description="torch.nn.Linear holding the given parameters",
                expression="nn.Linear(in, out)(x)", baseline=True)(nn.Linear)


@register("f_linear", description="the functional form of nn.Linear", expression="F.linear(x, W, b)")
def f_linear(weight, bias):
    def forward(x):
        return F.linear(x, weight, bias)

    return forward


@register("matmul_t", description="torch.matmul against the transposed weight", expression="torch.matmul(x, W.T) + b")
def matmul_t(weight, bias):
    def forward(x):
        y = torch.matmul(x, weight.T)
        return y if bias is None else y + bias

    return forward


@register("at_operator", description="the @ operator against the transposed weight", expression="x @ W.T + b")
def at_operator(weight, bias):
    def forward(x):
        y = x @ weight.T
        return y if bias is None else y + bias

    return forward


def _row_by_weight_workspace(batch: int, in_features: int, out_features: int, itemsize: int) -> int:
    """A (batch, out, in) tensor: bmm may materialise the expanded weight, one copy per row
    of the batch, and mul_sum materialises its broadcast product before the sum."""
    return batch * in_features * out_features * itemsize


ROW_BY_WEIGHT = Limits(workspace=_row_by_weight_workspace)


@register("bmm", limits=ROW_BY_WEIGHT,
          description="torch.bmm with the weight expanded over the flattened batch (works for any batch)",
          expression="torch.bmm(x.reshape(-1, 1, in), W.T.expand(B, in, out)) + b")
def bmm(weight, bias):
    out_features, in_features = weight.shape

    def forward(x):
        rows = x.reshape(-1, 1, in_features)
        batch = rows.shape[0]
        y = torch.bmm(rows, weight.T.unsqueeze(0).expand(batch, in_features, out_features))
        y = y.reshape(*x.shape[:-1], out_features)
        return y if bias is None else y + bias

    return forward


@register("einsum", description="torch.einsum over the last axis", expression="torch.einsum('...i,oi->...o', x, W) + b")
def einsum(weight, bias):
    def forward(x):
        y = torch.einsum("...i,oi->...o", x, weight)
        return y if bias is None else y + bias

    return forward


@register_module(
    "custom_parameter",
    description="a hand-written nn.Module holding nn.Parameter weight and bias, initialised as nn.Linear is",
    expression="CustomLinear(in, out)(x)  # x @ self.weight.t() + self.bias",
)
class CustomLinear(nn.Module):
    """The hand-made layer done right: nn.Linear's (out_features, in_features) layout, its
    U(-1/sqrt(in), 1/sqrt(in)) initialisation, its attributes and its state_dict keys."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # What nn.Linear's kaiming_uniform_(a=sqrt(5)) works out to, drawn directly.
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features else 0.0
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def forward(self, x):
        y = x @ self.weight.t()
        return y if self.bias is None else y + self.bias


@register_module(
    "custom_linear_layer",
    description="a seed article's CustomLinearLayer exactly as written: right outputs for given weights, "
                "but drawn from randn, so not a drop-in replacement for nn.Linear",
    expression="CustomLinearLayer(in, out)(x)  # torch.matmul(x, self.weight.T) + self.bias",
    untimed="checked only: its forward is matmul_t's expression, timed there",
)
class CustomLinearLayer(nn.Module):
    # As the article writes it (its claim: "like nn.Linear"); the drop-in checks say where it is not.
    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(output_dim, input_dim))
        self.bias = nn.Parameter(torch.randn(output_dim))

    def forward(self, x):
        return torch.matmul(x, self.weight.T) + self.bias


@register(
    "addmm",
    description="torch.addmm (fused bias) on the input flattened to 2-D",
    expression="torch.addmm(b, x.reshape(-1, in), W.T).reshape(*x.shape[:-1], out)",
)
def addmm(weight, bias):
    out_features, in_features = weight.shape

    def forward(x):
        rows = x.reshape(-1, in_features)
        y = torch.mm(rows, weight.T) if bias is None else torch.addmm(bias, rows, weight.T)
        return y.reshape(*x.shape[:-1], out_features)

    return forward


@register("mul_sum", limits=ROW_BY_WEIGHT,
          description="broadcast elementwise product summed over in_features (the slow first attempt)",
          expression="(x.unsqueeze(-2) * W).sum(-1) + b")
def mul_sum(weight, bias):
    def forward(x):
        y = (x.unsqueeze(-2) * weight).sum(-1)
        return y if bias is None else y + bias

    return forward
