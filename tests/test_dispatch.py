"""`linbench dispatch`: the aten ops each implementation really runs, recorded with a
TorchDispatchMode on real torch; the same trace twice; bad input in one line."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

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


def test_kernels_are_matched_to_ops_in_order_passing_over_composites():
    ops = dispatch.trace("nn_linear", "2x3x4x5").ops  # a 3-D input: views around one addmm
    names = [o.short for o in ops]
    assert "addmm" in names
    # What torch.profiler lists for such a call on CUDA: the composite linear first (no kernel of
    # its own), the ops the trace holds, an op the trace does not hold, in order.
    events = [("aten::linear", ()), *[(f"aten::{n}", ("gemm_kernel",) if n == "addmm" else ())
                                      for n in names], ("aten::empty", ())]
    got = dispatch.attach_kernels(list(ops), events)
    assert [o.kernels for o in got] == [("gemm_kernel",) if n == "addmm" else () for n in names]
    # An op the profiler did not list keeps no kernels; the ops after it are still matched.
    partial = [e for e in events if e[0] != "aten::addmm"] + [("aten::addmm", ("late",))]
    assert [o.kernels for o in dispatch.attach_kernels(list(ops), partial)][names.index("addmm")] == ("late",)
    summary = dispatch.summary(dataclasses.replace(dispatch.trace("f_linear", "4x5"), ops=tuple(got)))
    assert "gemm_kernel" in dispatch.kernel_text(summary["ops"], summary["kernels"])


def test_the_profiler_lists_a_calls_aten_ops_in_order_here_without_kernels_on_the_cpu():
    x, w, b = torch.randn(4, 5), torch.randn(3, 5), torch.randn(3)
    events = dispatch.profiled_kernels(lambda: torch.addmm(b, x, w.t()))
    names = [n for n, _k in events]
    assert names.index("aten::t") < names.index("aten::addmm")
    assert all(k == () for _n, k in events)
    assert "kernels" not in dispatch.summary(dispatch.trace("f_linear", "4x5"))  # a CPU trace keeps none


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


TRIAL = '''"""F.linear, for the dispatch history test."""
import torch.nn.functional as F

import linear_impls


@linear_impls.register_forward(description="F.linear, for the dispatch history test")
def dispatch_trial(x, weight, bias):
{body}    return F.linear(x, weight, bias)
'''


def test_a_changed_dispatch_is_found_between_commits_and_nothing_else(tmp_path):
    """Real asv, three commits (this repository's last three, as asv's hashes): the plugin
    computes F.linear, then clones its input first, then changes a comment.  The traces kept
    beside the results give exactly one change: the plugin's, at the second, aten.clone added."""
    import subprocess
    import sys

    from linear_impls import history
    from linear_impls.report import build, load_results

    from .conftest import ROOT, asv_config, run_asv

    config = asv_config(tmp_path)
    commits = subprocess.run(["git", "rev-list", "-3", "--reverse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert len(commits) == 3
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    run_asv(config, "machine", "--yes", "--machine", "linbench-test")
    pattern = (r"^bench_linear\.Dispatch\.\w+\('(?:dispatch_trial|f_linear|mul_sum)', '64x256x256', 'float32', "
               r"'cpu', 'forward'\)$")
    for commit, body in zip(commits, ("", "    x = x.clone()\n", "    x = x.clone()  # a comment\n"), strict=True):
        (plugins / "dispatch_trial_plugin.py").write_text(TRIAL.format(body=body))
        proc = run_asv(config, "run", "-E", f"existing:{sys.executable}", "--set-commit-hash", commit,
                       "--machine", "linbench-test", "--show-stderr", "-b", pattern,
                       # asv says the commit to a benchmark it built; an existing environment, told here.
                       env_extra={"ASV_COMMIT": commit,
                                  "LINBENCH_SELECT": pattern, "LINEAR_IMPLS_PLUGINS": "dispatch_trial_plugin",
                                  "LINBENCH_PLUGIN_PATH": str(plugins),
                                  "LINBENCH_DISPATCH_DIR": str(tmp_path / "results" / "linbench-test" / "dispatch")})
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = load_results(tmp_path / "results")
    traced = data.dispatch
    assert set(traced["impl"]) == {"dispatch_trial", "f_linear", "mul_sum"} and len(traced) == 9
    ops = data.frame[(data.frame["kind"] == "ops") & (data.frame["status"] == "ok")]
    assert len(ops) == 9 and (ops["value"] >= 1).all()  # asv records the number of ops per call
    changes = history.dispatch_changes(traced, data.files, history.git_order(ROOT))
    assert len(changes) == 1, changes
    c = changes.iloc[0]
    assert (c["impl"], c["commit"], c["previous_commit"]) == ("dispatch_trial", commits[1], commits[0])
    assert c["added"] == ["aten.clone.default"] and c["removed"] == []
    figures = build.figures(build.Analysed.of(data))
    assert figures["dispatch"] and all(r["sequence"] for r in figures["dispatch"])


def test_the_gate_names_a_dispatch_change_that_keeps_the_number_of_ops(tmp_path):
    from linear_impls import gate

    folder = tmp_path / "dispatch"
    base, head = "a" * 40, "b" * 40
    key = dispatch.case_key("plug", "64x256x256", "float32", "cpu", "forward")
    dispatch.save(dispatch.sidecar_file(folder, base, "env"), base, "env",
                  {key: {"ops": ["f:aten.t.default", "f:aten.addmm.default"], "intermediate_bytes": 0, "copies": 0}})
    dispatch.save(dispatch.sidecar_file(folder, head, "env"), head, "env",
                  {key: {"ops": ["f:aten.t.default", "f:aten.mm.default"], "intermediate_bytes": 0, "copies": 0}})
    params = ("'plug'", "'64x256x256'", "'float32'", "'cpu'", "'forward'")
    same = gate.Change(gate.DISPATCH, params, "same", 2.0, 2.0, 1.0, None, "ops")
    other = gate.Change(gate.DISPATCH, ("'f_linear'", *params[1:]), "same", 2.0, 2.0, 1.0, None, "ops")
    gate.attach_dispatch_changes([same, other], folder, base, head)
    assert same.verdict == "changed"
    assert same.functions == ["ops added: aten.mm.default; removed: aten.addmm.default"]
    assert other.verdict == "same" and other.functions is None  # no trace of it: nothing claimed
