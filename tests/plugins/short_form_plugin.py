"""A plugin in the short form: a new way of computing the layer in three lines."""
import linear_impls


@linear_impls.register_forward(description="x @ W.T, written as one expression (the bias added by linbench)")
def short_form_at(x, weight):
    return x @ weight.T
