"""Implementations that fail in every way a real one can: `linbench check` must report each
with the right reason and still give every good implementation's results."""

import ctypes
import os
import time

import torch

import linear_impls


def _register(name, description):
    return linear_impls.register(name, description=description)


@_register("bad_raises", "raises inside forward")
def bad_raises(weight, bias):
    def forward(x):
        raise RuntimeError("kernel not implemented for this layout")

    return forward


@_register("bad_nan", "returns NaN")
def bad_nan(weight, bias):
    return lambda x: torch.full((*x.shape[:-1], weight.shape[0]), float("nan"), dtype=x.dtype, device=x.device)


@_register("bad_shape", "returns the wrong shape")
def bad_shape(weight, bias):
    return lambda x: (x @ weight.T)[..., :1]


@_register("bad_segfault", "dereferences NULL through ctypes")
def bad_segfault(weight, bias):
    def forward(x):
        ctypes.string_at(0)

    return forward


@_register("bad_abort", "calls os.abort()")
def bad_abort(weight, bias):
    def forward(x):
        os.abort()

    return forward


@_register("bad_sleep", "sleeps past any time limit")
def bad_sleep(weight, bias):
    def forward(x):
        time.sleep(3600)

    return forward


@_register("bad_oom", "allocates far past memory")
def bad_oom(weight, bias):
    def forward(x):
        return torch.empty(1 << 40, dtype=torch.uint8)  # 1 TiB

    return forward
