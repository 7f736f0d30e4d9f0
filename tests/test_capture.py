"""Your model's shapes: ``linbench capture`` sees every linear call of a model built from torch's
own modules (FLOPs equal to torch's FlopCounterMode's, exactly), a sweep file is a sweep everywhere,
bad input is one line and exit 2, and a captured model's step is answered on the page."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from linear_impls import capture, registry, sweep, sweepfile

from .conftest import ASV_CLONE_MACHINE, run_linbench


class Model(nn.Module):
    """Attention (self, and with separate k/v: MHA's sliced in_proj), a feed-forward, a layer used
    twice, a bias-less functional head on a parameter, after an embedding (so every input needs dX)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 48, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.cross = nn.MultiheadAttention(32, 4, kdim=24, vdim=24)  # q, k, v weights of their own
        self.cross2 = nn.MultiheadAttention(32, 4)  # k, v not q: slices of one in_proj_weight
        self.kv = nn.Linear(32, 24)
        self.shared = nn.Linear(32, 32)
        self.head = nn.Parameter(torch.randn(10, 32))

    def forward(self, ids):
        h = self.enc(self.emb(ids))
        kv = self.kv(h).transpose(0, 1)
        a, _ = self.cross(h.transpose(0, 1), kv, kv)
        a, _ = self.cross2(a, h.transpose(0, 1), h.transpose(0, 1))
        h = self.shared(self.shared(a.transpose(0, 1)))
        return F.linear(h, self.head)


def build():
    torch.manual_seed(0)
    return Model(), (torch.randint(0, 50, (3, 7)),)


def _linear_flops(counter: FlopCounterMode) -> int:
    counts = counter.get_flop_counts()["Global"]
    return sum(v for k, v in counts.items() if str(k) in ("aten.mm", "aten.addmm"))


def _file_flops(sf: sweepfile.SweepFile, training: bool) -> int:
    total = 0
    for c in sf.cases:
        per_call = sweep.parse_shape(c.shape).flops()
        total += per_call * (c.count + (c.grad_input + c.grad_weight if training else 0))
    return total


@pytest.mark.parametrize("mode", sweep.MODES)
def test_captured_flops_equal_torchs_flop_counter_exactly(mode):
    model, args = build()
    cap = capture.capture(model, args, mode)
    sf = sweepfile.SweepFile("m", tuple(cap.cases()))
    with FlopCounterMode(display=False) as counter:
        out = model(*args)
        if mode == "forward_backward":
            out.sum().backward()
    assert _file_flops(sf, mode == "forward_backward") == _linear_flops(counter) > 0


def test_every_way_of_reaching_a_linear_layer_is_recorded_with_its_module():
    model, args = build()
    cases = capture.capture(model, args).cases()
    by_module = {m: c for c in cases for m in c.modules}
    # MultiheadAttention's projections, which it computes without calling its out_proj module.
    assert "enc.layers.0.self_attn.in_proj" in by_module and "enc.layers.1.self_attn.out_proj" in by_module
    assert {"cross.q_proj", "cross.k_proj", "cross.v_proj", "cross2.in_proj"} <= set(by_module)
    assert by_module["cross.k_proj"].shape == "7x3x24x32"  # (seq, batch, kdim): not batch first
    assert by_module["shared"].count == 2  # one layer called twice
    assert by_module["head"].bias is False and by_module["head"].shape == "3x7x32x10"
    assert by_module["enc.layers.0.linear1"].shape == "3x7x32x48"
    # A call that does not look F.linear up (a C binding) is seen by the TorchFunctionMode.
    cap = capture.capture(nn.Sequential(), torch.randn(2, 5))
    assert cap.calls == []

    class Direct(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 5))

        def forward(self, x):
            return torch._C._nn.linear(x, self.w)

    (case,) = capture.capture(Direct(), torch.randn(2, 5)).cases()
    assert (case.shape, case.count, case.modules) == ("2x5x3", 1, ("w",))
    assert F.linear is capture._ORIGINAL_LINEAR  # restored


def test_a_capture_written_and_read_back_is_the_same_sweep(tmp_path):
    model_py = tmp_path / "mymodel.py"
    model_py.write_text(textwrap.dedent('''
        import torch
        from torch import nn

        def build():
            torch.manual_seed(0)
            return nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 8)), (torch.randn(4, 16),)
    '''))
    out = tmp_path / "sweeps" / "mine.toml"
    proc = run_linbench("capture", f"{model_py}:build", "--out", str(out), "--mode", "forward_backward")
    assert proc.returncode == 0, proc.stderr
    sf = sweepfile.load(out)
    assert sf.name == "build" and sf.modes == ("forward_backward",)
    assert [(c.shape, c.count, c.bias) for c in sf.cases] == [("4x16x8", 1, True), ("4x8x8", 2, True)]
    assert sf.cases[0].grad_input == 0 and sf.cases[0].grad_weight == 1  # the first layer's input needs no dX
    listed = run_linbench("sweep", str(out), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert {(r["shape"], r["count"]) for r in rows} == {("4x16x8", 1), ("4x8x8", 2)}
    assert {r["mode"] for r in rows} == {"forward_backward"}
    # The same cases as JSON, by hand.
    as_json = tmp_path / "mine.json"
    as_json.write_text(sweepfile.dump_json(sf))
    assert sweepfile.load(as_json).cases == sf.cases
    # A built-in sweep's shape in a file is the same asv case (its shape string).
    assert sweep.load(str(out)).shapes == ("4x16x8", "4x8x8")


BAD_MODELS = {
    "missing_module.py": (None, "no such file"),
    "imports_badly.py": ("import no_such_module_anywhere\n", "cannot import"),
    "no_callable.py": ("x = 1\n", "has no 'build'"),
    "raises.py": ("def build():\n    raise ValueError('no weights here')\n", "no weights here"),
    "wrong_return.py": ("def build():\n    return 3\n", "must return (model, example_args)"),
    "no_linear.py": ("import torch\nfrom torch import nn\n\ndef build():\n"
                     "    return nn.Sequential(nn.ReLU()), (torch.randn(2, 3),)\n", "no linear-layer call"),
    "forward_fails.py": ("import torch\nfrom torch import nn\n\ndef build():\n"
                         "    return nn.Linear(3, 2), (torch.randn(2, 4),)\n", "forward raised RuntimeError"),
}


@pytest.mark.parametrize("name", list(BAD_MODELS))
def test_a_model_that_cannot_be_captured_is_one_line_and_exit_2(tmp_path, name):
    text, expected = BAD_MODELS[name]
    if text is not None:
        (tmp_path / name).write_text(text)
    proc = run_linbench("capture", f"{tmp_path / name}:build", "--out", str(tmp_path / "out.toml"))
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("linbench: error")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out.toml").exists()


BAD_FILES = {
    "broken.toml": ("name = 'x'\n[[case]\n", "not valid TOML"),
    "no_cases.toml": ("name = 'x'\n", "no cases"),
    "bad_shape.toml": ("name = 'x'\n[[case]]\nshape = '12xab'\n", "malformed shape"),
    "bad_count.toml": ("name = 'x'\n[[case]]\nshape = '2x3x4'\ncount = 0\n", "'count'"),
    "bad_dtype.toml": ("name = 'x'\n[[case]]\nshape = '2x3x4'\ndtype = 'int8'\n", "unknown dtype"),
    "builtin_name.toml": ("name = 'quick'\n[[case]]\nshape = '2x3x4'\n", "built-in sweep"),
    "unknown_key.toml": ("name = 'x'\nshapes = []\n[[case]]\nshape = '2x3x4'\n", "unknown key"),
    "list.json": ("[1, 2]", "table of keys"),
    "absent.toml": (None, "not found"),
}


# Every fault through `linbench sweep`; two through every command that takes --sweep.
@pytest.mark.parametrize(("name", "command"), [(n, "sweep") for n in BAD_FILES] + [
    (n, c) for n in ("bad_shape.toml", "absent.toml") for c in ("check", "run", "gate", "report")])
def test_a_sweep_file_that_cannot_be_used_is_one_line_and_exit_2(tmp_path, name, command):
    text, expected = BAD_FILES[name]
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    args = {"sweep": [str(path)], "check": ["--sweep", str(path), "--impl", "f_linear"],
            "run": ["--sweep", str(path)], "gate": ["HEAD", "--sweep", str(path)],
            "report": ["--results", str(tmp_path), "--sweep", str(path)]}[command]
    proc = run_linbench(command, *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("linbench: error")]
    assert len(errors) == 1, proc.stderr
    if command != "report":  # the report says first that there are no results
        assert expected in errors[0] and str(path) in errors[0], errors[0]
    assert "Traceback" not in proc.stderr


def test_an_unknown_sweep_name_or_a_bad_environment_value_is_one_line(monkeypatch):
    proc = run_linbench("sweep", "nightly")
    assert proc.returncode == 2 and "unknown sweep 'nightly'" in proc.stderr and "Traceback" not in proc.stderr
    monkeypatch.setenv(sweep.SWEEP_ENV, "/nowhere/model.toml")
    with pytest.raises(ValueError, match=r"\$LINBENCH_SWEEP: sweep file .*not found"):
        sweep.current_sweep()


def test_a_sweep_files_cases_are_exactly_what_runs():
    sf = sweepfile.SweepFile("m", (sweepfile.FileCase("16x96x40", count=3),
                                   sweepfile.FileCase("64x256x256", "float16", count=2)), modes=("forward",),
                             path="/m.toml")
    sw = sweep.from_file(sf)
    f_linear = registry.get("f_linear")
    s = sweep.parse_shape
    assert sweep.skip_reason(f_linear, s("16x96x40"), "float32", "cpu", "forward", sw) is None
    assert "not a case" in sweep.skip_reason(f_linear, s("16x96x40"), "float16", "cpu", "forward", sw)
    assert "forward_backward not in" in sweep.skip_reason(f_linear, s("16x96x40"), "float32", "cpu",
                                                          "forward_backward", sw)
    assert sweep.skip_reason(f_linear, s("64x256x256"), "float16", "cpu", "forward", sw) is None
    assert sw.dtypes == ("float32", "float16") and sw.ref == "/m.toml"


@pytest.mark.slow
def test_a_captured_model_runs_in_asv_and_the_page_answers_per_step(asv_clone, tmp_path):
    model_py = tmp_path / "small_model.py"
    model_py.write_text(textwrap.dedent('''
        import torch
        from torch import nn

        def build():
            torch.manual_seed(0)
            layer = nn.TransformerEncoderLayer(64, 4, 96, dropout=0.0, batch_first=True)
            return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), (torch.randn(2, 5, 64),)
    '''))
    out = tmp_path / "small_model.toml"
    cap = run_linbench("capture", f"{model_py}:build", "--out", str(out), "--name", "small_model")
    assert cap.returncode == 0, cap.stderr
    sf = sweepfile.load(out)
    assert sum(c.count for c in sf.cases) == 8  # 2 layers x (in_proj, out_proj, linear1, linear2)
    # Shapes of its own, outside every built-in sweep: asv's params take them in.
    assert any(c.shape not in sweep.ALL_SHAPES for c in sf.cases)
    impls = ["f_linear", "nn_linear", "einsum"]
    proc = run_linbench("run", "--root", str(asv_clone), "--sweep", str(out), "--only", "answer",
                        *[a for i in impls for a in ("--impl", i)], "--", "--machine", ASV_CLONE_MACHINE,
                        timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    results_dir = asv_clone / ".asv" / "results"
    assert (results_dir / "linbench-sweeps" / "small_model.toml").is_file()
    page = tmp_path / "report" / "index.html"
    rep = run_linbench("report", "--results", str(results_dir), "--out", str(page))
    assert rep.returncode == 0, rep.stderr
    figures = json.loads(page.with_suffix(".json").read_text())
    totals = [r for r in figures["model"] if r["sweep"] == "small_model"]
    assert {r["impl"] for r in totals} == {*impls, "fastest per shape"}, totals
    assert all(r["complete"] and r["seconds_per_step"] > 0 for r in totals)
    fastest = next(r for r in totals if r["impl"] == "fastest per shape")
    assert all(fastest["seconds_per_step"] <= r["seconds_per_step"] * (1 + 1e-12) for r in totals)
    cases = [r for r in figures["model_cases"] if r["sweep"] == "small_model"]
    assert {r["shape"] for r in cases} == {c.shape for c in sf.cases}
    assert sum(r["share"] for r in cases) == pytest.approx(1.0)
    html = page.read_text()
    assert "Your model: linear time per step" in html and "small_model" in html
    assert Path(results_dir / "linbench-sweeps").is_dir()


def test_missing_cases_are_judged_against_the_sweep_the_run_recorded(tmp_path):
    import shutil

    from linear_impls import asvrun
    from linear_impls.report import build_report, load_results

    results_dir = tmp_path / "results"
    shutil.copytree(Path(__file__).parent / "data" / "report" / "results", results_dir)
    files = load_results(results_dir).files
    a = files[files["machine"] == "runner-a"].sort_values("date").iloc[-1]
    before = build_report(results_dir, tmp_path / "before.html")
    # runner-a's latest commit ran the hand-written tiny_model sweep file (float32), not the default sweep.
    tiny = sweep.load(str(results_dir / asvrun.SWEEP_FILES / "tiny_model.toml"))
    target = asvrun.Target("runner-a", (a["env"],))
    asvrun.record_sweep(results_dir, target, [a["commit"]], tiny, ["float32"])
    assert asvrun.recorded_sweeps(results_dir, "runner-a", a["commit"], a["env"]) == {
        "tiny_model": {"file": True, "dtypes": ["float32"]}}
    after = build_report(results_dir, tmp_path / "after.html")
    assert after.n_missing < before.n_missing
    html = (tmp_path / "after.html").read_text()
    assert "timed cases of the tiny_model sweep" in html
    # Only tiny_model's cases can be missing on runner-a now: its two shapes, float32.
    from linear_impls.report.build import Analysed

    d = Analysed.of(load_results(results_dir), results_dir, [sweepfile.load(tiny.path)])
    mine = d.missing[d.missing["file"].isin(d.latest_files.loc[d.latest_files["machine"] == "runner-a", "file"])]
    assert set(mine["shape"]) <= {"1x64x64", "64x256x256"} and set(mine["dtype"]) <= {"float32"}
    assert set(mine["sweep"]) == {"tiny_model"}


def test_plain_asv_runs_a_sweep_file_named_relative_to_the_checkout(tmp_path):
    """``LINBENCH_SWEEP=sweeps/mine.toml asv run`` from the checkout: asv runs each benchmark in a
    temporary folder, where the relative path would name nothing."""
    import subprocess
    import sys

    from linear_impls import results

    from .conftest import ROOT, asv_config, run_asv

    folder = ROOT / ".asv" / "test-sweeps"
    folder.mkdir(parents=True, exist_ok=True)
    sweep_path = folder / f"plain_{tmp_path.name}.toml"
    sweep_path.write_text('name = "plain_asv_model"\nmodes = ["forward"]\n[[case]]\nshape = "5x7x3"\ncount = 4\n')
    try:
        config = asv_config(tmp_path)
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        run_asv(config, "machine", "--yes", "--machine", "linbench-test")
        proc = run_asv(config, "run", "-E", f"existing:{sys.executable}", "--set-commit-hash", head,
                       "--machine", "linbench-test", "-b",
                       r"^bench_linear\.Inference\.\w+\('f_linear', '(?:5x7x3|1x8x8)', 'float32', 'cpu'\)$",
                       env_extra={"LINBENCH_SWEEP": str(sweep_path.relative_to(ROOT))})
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        (res,) = list(results.iter_files(tmp_path / "results"))
        values = {c.params[1].strip("'"): c.value for c in results.iter_cases(res)
                  if c.benchmark.endswith("Inference.time_forward") and c.params[0] == "'f_linear'"
                  and c.params[2:] == ("'float32'", "'cpu'")}
        assert values["5x7x3"] > 0  # the file's own shape: a case of asv's params, measured
        assert values["1x8x8"] != values["1x8x8"]  # a built-in shape, not in the file: n/a (NaN)
    finally:
        sweep_path.unlink()
