"""Faulty implementations for the asv sweep tests: each must be reported, none may stop the rest."""

import os
import time

import linear_impls


@linear_impls.register("faulty_dropped_bias", description="forgets the bias: fails its gate")
def faulty_dropped_bias(weight, bias):
    return lambda x: x @ weight.T


@linear_impls.register("faulty_abort", description="calls os.abort() in forward")
def faulty_abort(weight, bias):
    def forward(x):
        os.abort()

    return forward


@linear_impls.register("faulty_hang", description="sleeps far past any time limit")
def faulty_hang(weight, bias):
    def forward(x):
        time.sleep(3600)

    return forward
