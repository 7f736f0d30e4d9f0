#!/usr/bin/env bash
# The CUDA paths proved on a machine with an NVIDIA GPU, from a fresh clone, in minutes:
# the CUDA tests, the CUDA checks, TF32 caught by the float32 check, real asv on the `gpu`
# sweep's CUDA cases with every metric (times, ratios, speedups, a call's own device memory,
# the ceilings with the L2's bandwidth, compiled variants and their CUDA-graph twins), the
# summary page, and a summary of what it all said.  What a CPU cannot run of the CUDA
# logic is here; tests/test_cuda_logic.py tests the rest on any machine.
#
#     bash benchmarks/gpu_proof.sh          # or: make gpu-proof
#
# Python: $PYTHON if set (a torch with CUDA and this project installed), else a virtualenv
# over the system's packages (.venv-gpu), so a CUDA torch already there is used as is and pip
# brings the rest from the package registries (PyPI's Linux torch wheel is a CUDA build).
# Everything it writes goes under $OUT (default .asv/gpu-proof).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L > /dev/null 2>&1; then
  echo "gpu_proof: needs an NVIDIA GPU: nvidia-smi finds none on this machine (run it where one is lent)" >&2
  exit 2
fi

OUT=${OUT:-$ROOT/.asv/gpu-proof}
mkdir -p "$OUT"
START=$(date +%s)
step() { echo "gpu_proof: [$(( $(date +%s) - START )) s] $*"; }
fail() { echo "gpu_proof: FAILED: $*" >&2; exit 1; }

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  step "python: a virtualenv over the system's packages (.venv-gpu)"
  python3 -m venv --system-site-packages .venv-gpu || fail "python3 -m venv"
  PY=$ROOT/.venv-gpu/bin/python
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2> /dev/null; then
    "$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0" || fail "pip install torch"
  fi
  "$PY" -m pip install -q --disable-pip-version-check -e . pytest pyyaml || fail "pip install -e ."
fi
ASV=("$(dirname "$PY")/asv")
[ -x "${ASV[0]}" ] || ASV=("$PY" -m asv)
export LINBENCH_SWEEP=gpu LINBENCH_CHECK_CACHE=off

step "the GPU, as linbench sees it"
"$PY" - << 'EOF' || fail "CUDA is not usable"
import sys
from linear_impls import gpu
reason = gpu.cuda_unavailable_reason()
if reason:
    print(f"  CUDA not usable: {reason}")
    sys.exit(1)
print(f"  {gpu.device_facts()}")
EOF

step "the CUDA tests (tests/test_cuda.py on the GPU, tests/test_cuda_logic.py)"
LINBENCH_REQUIRE_CUDA=1 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_cuda_logic.py \
  > "$OUT/pytest.txt" 2>&1
PYTEST=$?
tail -n 3 "$OUT/pytest.txt" | sed 's/^/  /'

step "the CUDA checks (linbench check --device cuda, every implementation and dtype)"
"$PY" -m linear_impls check --device cuda --json --quiet > "$OUT/checks.json"
CHECKS=$?

step "what each way launches: the op trace with the kernels of each aten op (linbench dispatch --device cuda)"
for impl in f_linear einsum; do
  "$PY" -m linear_impls dispatch "$impl" 8x128x768x3072 --device cuda --mode forward_backward \
    > "$OUT/dispatch-$impl.txt" 2>&1 || echo "  dispatch $impl failed (see $OUT/dispatch-$impl.txt)"
  grep -m 4 "kernel:" "$OUT/dispatch-$impl.txt" | sed "s/^ */  $impl: /"
done

step "asv: the gpu sweep's CUDA cases, every metric"
IMPLS="nn_linear f_linear addmm mul_sum compiled_f_linear compiled_ro_f_linear"
"${ASV[@]}" machine --yes --machine gpu-proof > /dev/null
PATTERNS=$("$PY" - $IMPLS << 'EOF'
import sys
sys.path.insert(0, "benchmarks")
import bench_linear  # noqa: F401  (registers the compiled variants the suite times)
from linear_impls import asvconf, sweep
for p in asvconf.case_patterns(sweep.SWEEPS["gpu"], devices=["cuda"], impls=sys.argv[1:]).values():
    print(f"-b {p}")
EOF
)
# shellcheck disable=SC2086
"${ASV[@]}" run -E "existing:$PY" --set-commit-hash "$(git rev-parse HEAD)" --machine gpu-proof --record-samples \
  --show-stderr $PATTERNS > "$OUT/asv.txt" 2>&1
ASV_RC=$?
tail -n 2 "$OUT/asv.txt" | sed 's/^/  /'

step "the summary page"
"$PY" -m linear_impls report --checks "$OUT/checks.json" --out "$OUT/index.html" 2>&1 | sed 's/^/  /'

step "summary"
"$PY" - "$OUT" << 'EOF'
import json, sys
from pathlib import Path

import torch

import linear_impls
from linear_impls import checks, gpu, results, sweep

out = Path(sys.argv[1])
rows = json.loads((out / "checks.json").read_text()) if (out / "checks.json").stat().st_size else []
failed = [r for r in rows if r["status"] == "fail" and not r["check"].startswith("dropin_")]
print(f"  checks on cuda: {len(rows)} rows, {len(failed)} failed"
      + "".join(f"\n    {r['impl']} {r['check']} {r['dtype']} {r['case']}: {r['reason'][:150]}" for r in failed[:5]))
measured = failed_cases = 0
memory = None
for res in results.iter_files(Path(".asv/results"), machine="gpu-proof"):
    for case in results.iter_cases(res):
        params = tuple(p.strip("'") for p in case.params)
        if "cuda" not in params and "DeviceMemory" not in case.benchmark:
            continue
        if case.value is None:
            failed_cases += 1
        elif case.value == case.value:
            measured += 1
        if case.benchmark.endswith("DeviceMemory.track_peak_bytes") and \
                params == ("nn_linear", "8x128x768x3072", "float16", "forward_backward"):
            memory = case.value
print(f"  asv: {measured} cuda results measured, {failed_cases} failed")
shape = sweep.parse_shape("8x128x768x3072")
if memory is not None:
    print(f"  device memory of one call, nn_linear 8x128x768x3072 float16 training: {memory / 2**20:.1f} MiB, "
          f"its x, W, b, y: {shape.tensor_bytes(2) / 2**20:.1f} MiB (resident tensors and cuBLAS's workspace not counted)")
page = out / "index.json"
if page.is_file():
    roof = [r for r in json.loads(page.read_text()).get("roofline", []) if r.get("device") == "cuda"]
    above = [r for r in roof if r.get("above_roof")]
    if roof:
        r = max(roof, key=lambda r: r["gflops"])
        print(f"  roofline: {len(roof)} cuda points, {len(above)} above their roof; best {r['impl']} {r['shape']} "
              f"{r['dtype']}: {r['gflops']:.0f} GFLOP/s, {100 * r['fraction_of_roof']:.0f}% of {r['roof_gflops']:.0f}")
torch.backends.cuda.matmul.allow_tf32 = True
case = next(c for c in checks.CASES if c.id == "normal_k16384")
tf32 = checks.run_check(linear_impls.get("f_linear"), case, "float32", "cuda", "forward")
gpu.pin_precision()
print(f"  TF32 caught by the float32 check: {'yes' if tf32.status == 'fail' else 'NO'} ({tf32.reason[:120]})")
EOF
step "done: pytest exit $PYTEST, checks exit $CHECKS, asv exit $ASV_RC; files in $OUT"
[ "$PYTEST" -eq 0 ] && [ "$CHECKS" -le 1 ]
