"""`linbench dispatch`: the aten ops each implementation really runs, recorded with a
TorchDispatchMode on real torch; the same trace twice; bad input in one line."""

from __future__ import annotations

import json

import pytest

from linear_impls import dispatch

from .conftest import run_linbench


def ops(t, phase="forward"):
    return [o.op for o in t.ops if o.phase == phase]


def test_each_way_dispatches_to_its_own_kernels():
    # F.linear on a 2-D input: one addmm (after the weight's transpose view).
    f = dispatch.trace("f_linear", "64x32x16")
    assert "aten.addmm.default" in ops(f) and "aten.mm.default" not in ops(f)
    # mul_sum: the broadcast product, materialised, then its sum.
    m = dispatch.trace("mul_sum", "64x32x16")
    assert "aten.mul.Tensor" in ops(m) and "aten.sum.dim_IntList" in ops(m)
    product = next(o for o in m.ops if o.op == "aten.mul.Tensor")
    assert product.outputs[0] == (64, 16, 32) and product.fresh_bytes == 64 * 16 * 32 * 4
    assert m.intermediate_bytes >= 64 * 16 * 32 * 4  # the product is what the layer's arithmetic never counts
    assert f.intermediate_bytes < m.intermediate_bytes
    # bmm with an expanded weight.
    b = dispatch.trace("bmm", "64x32x16")
    assert "aten.bmm.default" in ops(b) and "aten.expand.default" in ops(b)


def test_a_training_step_marks_its_backward_ops():
    t = dispatch.trace("nn_linear", "64x32x16", mode="forward_backward")
    assert "aten.addmm.default" in ops(t, "forward")
    back = ops(t, "backward")
    assert "aten.mm.default" in back  # dX = dY·W and dW = dYᵀ·X
    assert back.count("aten.mm.default") == 2
    assert not [o for o in ops(t, "backward") if o in ops(t, "forward") and o == "aten.addmm.default"]


def test_views_and_copies_are_told_apart():
    t = dispatch.trace("f_linear", "64x32x16")
    transpose = next(o for o in t.ops if o.short in ("t", "transpose", "permute"))
    assert transpose.view and transpose.fresh_bytes == 0
    addmm = next(o for o in t.ops if o.short == "addmm")
    assert not addmm.view and addmm.fresh_bytes == 64 * 16 * 4


def test_the_cli_prints_the_same_trace_twice_and_json_has_op_phase_and_shapes():
    first = run_linbench("dispatch", "f_linear", "8x64x32", "--mode", "forward_backward")
    second = run_linbench("dispatch", "f_linear", "8x64x32", "--mode", "forward_backward")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert "addmm" in first.stdout and "backward:" in first.stdout
    js = run_linbench("dispatch", "mul_sum", "4x3x2", "--json")
    assert js.returncode == 0, js.stderr
    data = json.loads(js.stdout)
    assert {"op", "phase", "inputs", "outputs"} <= set(data["ops"][0])
    assert {o["op"] for o in data["ops"]} >= {"aten.mul.Tensor", "aten.sum.dim_IntList"}


@pytest.mark.parametrize("args, says", [
    (["no_such_impl", "4x3x2"], "unknown implementation"),
    (["f_linear", "4xx3"], "shape"),
    (["f_linear", "4x3x2", "--dtype", "float8"], "unknown dtype"),
    (["f_linear", "4x3x2", "--device", "tpu"], "unknown device"),
])
def test_bad_input_is_one_line_and_exit_2(args, says):
    proc = run_linbench("dispatch", *args)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
