"""The built-in implementations: each is the expression a user would write.

Every factory receives ``weight`` (out_features, in_features) and ``bias``
(out_features,) or None as leaf ``nn.Parameter``s and returns ``forward(x)`` for
``x`` of shape (*, in_features).  Whatever can be prepared once (a module, a view)
is prepared in the factory, outside the timed closure.  They are written as full
factories, not with ``register_forward``'s short form, so that what is timed is the
expression alone, without the extra Python call the short form adds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Limits, register


@register("nn_linear", description="torch.nn.Linear holding the given parameters", expression="nn.Linear(in, out)(x)",
          baseline=True)
def nn_linear(weight, bias):
    out_features, in_features = weight.shape
    layer = nn.Linear(in_features, out_features, bias=bias is not None, device="meta")
    layer.weight = weight
    if bias is not None:
        layer.bias = bias
    return layer


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


class CustomLinear(nn.Module):
    """The hand-made layer: an nn.Module holding nn.Parameter weight and bias."""

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter | None):
        super().__init__()
        self.weight = weight
        self.bias = bias

    def forward(self, x):
        y = x @ self.weight.t()
        return y if self.bias is None else y + self.bias


@register(
    "custom_parameter",
    description="a hand-written nn.Module holding nn.Parameter weight and bias",
    expression="CustomLinear(W, b)(x)  # x @ self.weight.t() + self.bias",
)
def custom_parameter(weight, bias):
    return CustomLinear(weight, bias)


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
