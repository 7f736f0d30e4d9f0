"""An implementation whose compiled form recompiles on every call: a guard that always fails."""
import linear_impls

CALLS = [0]


@linear_impls.register_forward(description="x @ W.T, scaled by a Python number that changes every call")
def recompiling_linear(x, weight):
    CALLS[0] += 1
    # Dynamo specializes on the int it reads: every call's new value fails its guard.
    return x @ weight.T * (1.0 + 0.0 * CALLS[0])
