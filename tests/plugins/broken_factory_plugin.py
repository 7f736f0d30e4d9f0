"""A plugin whose factory has the wrong signature: an error at registration time."""

import linear_impls


@linear_impls.register("wrong_signature", description="factory takes only the weight")
def wrong_signature(weight):
    return lambda x: x @ weight.T
