# The README's commands.  Everything installs into ./.venv from a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
# CI and this project's benchmarks pin torch; pyproject keeps a range for users.
TORCH_PIN ?= torch==2.13.0
# This machine keeps the CPU build of torch on disk; elsewhere pip uses its index.
PIP_FIND := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP := $(PY) -m pip install --disable-pip-version-check -q $(PIP_FIND)
# asv's own virtualenvs install torch with pip too: point them at the same wheels.
ifneq ($(wildcard /opt/wheels),)
export PIP_FIND_LINKS ?= /opt/wheels
endif
SWEEP ?= default
PORT ?= 8000
# asv's machine name: CI sets a fixed one so runs on different runners share one history.
MACHINE ?=
MACHINE_ARG := $(if $(MACHINE),--machine $(MACHINE),)
# The device(s) checked and benchmarked (cpu, cuda); empty: the CPU checks and every device's cases.
DEVICE ?=
CHECK_DEVICE_ARG := $(if $(DEVICE),--device $(DEVICE),)
RUN_DEVICE_ARG := $(if $(DEVICE),--device $(DEVICE),)
# PUSH_EACH_CHUNK=1: `make history` pushes the results after each asv invocation (CI).
PUSH_EACH_CHUNK ?=
AFTER_CHUNK_ARG := $(if $(PUSH_EACH_CHUNK), --after-chunk 'sh .ci/results-branch push',)
# The checks files the summary page reads: files, or folders of them (CI: one per runner);
# empty: reports/checks.json where it exists.
CHECKS ?=
CHECKS_ARG := $(foreach c,$(CHECKS),$(foreach f,$(if $(wildcard $(c)/.),$(wildcard $(c)/*.json $(c)/*/*.json),$(c)),--checks $(f)))
# `make gate`: the commit HEAD is compared with, and optionally a benchmark regex.
BASE_BRANCH ?= origin/main
BASE ?= $(shell git merge-base $(BASE_BRANCH) HEAD 2>/dev/null)
BENCH ?=

.PHONY: venv test lint check bench history pages gate quick-save quick-compare results-pull results-push report serve clean browser valgrind compiler cuda-visible test-cuda gpu-proof

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) "$(TORCH_PIN)"
	$(PIP) -e ".[dev]"
	touch $@

lint: venv
	$(VENV)/bin/ruff check .

# Debian packages, installed here when we may (root with apt): chromium drives the
# browser tests, valgrind counts instructions (Instructions.track_instructions).
APT_INSTALL = DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
define apt_need
	@command -v $(1) > /dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    { apt-get update -qq && $(APT_INSTALL) $(1) > /dev/null; } || echo "could not install $(1): $(2)"; \
	  else echo "$(1) not installed: $(2)"; fi; }
endef
browser:
	$(call apt_need,chromium,the browser tests will be skipped)
valgrind:
	$(call apt_need,valgrind,instruction counts will be n/a)
# Inductor (the compiled variants, linear_impls/compiled.py) compiles C++ on the CPU.
compiler:
	$(call apt_need,g++,the compiled variants cannot compile on the CPU)

# The test command (README, .ci/run).
test: venv lint browser valgrind compiler
	$(PY) -m pytest -q

check: venv
	$(VENV)/bin/linbench check

# After each asv invocation of `make bench`: the summary page from what is recorded so far,
# so the first dtype's answer can be read while the others run.
PAGE_SO_FAR = $(VENV)/bin/linbench report > /dev/null 2>&1 && echo "linbench: the page so far: reports/index.html"

# The main job: the checks (every dtype), then the answer through asv on HEAD (the
# speedups, wall time, ceilings, op traces and compiled variants, in float32: within 10
# minutes on a 2-core VM, benchmarks/README.md), asv's HTML and the summary page.
# SWEEP=quick|default|full picks the sweep; DTYPES="float32 float16" (or all) the dtypes;
# ONLY=all adds what the history decides with (ratios to F.linear, instruction counts)
# and the peak memory;
# RESUME=1 keeps what an interrupted run recorded.
DTYPES ?= float32
ONLY ?= answer
DTYPE_ARGS := $(if $(filter all,$(DTYPES)),,$(foreach d,$(DTYPES),--dtype $(d)))
ONLY_ARG := $(if $(filter all,$(ONLY)),,--only $(ONLY))
# The checks run while asv builds its environment (torch installed into a virtualenv: neither
# is timed), and end before anything is timed.  asv 0.6's `setup` exits 1 whatever happens
# (it returns its list of environments); linbench run reports an environment that failed.
bench: venv valgrind compiler
	@mkdir -p reports
	$(VENV)/bin/asv machine --yes $(MACHINE_ARG) > /dev/null
	@{ $(VENV)/bin/linbench check $(CHECK_DEVICE_ARG) --json --quiet > reports/checks.json; echo $$? > reports/.checks-status; } & \
	  $(VENV)/bin/asv setup > /dev/null 2>&1; wait; \
	  [ "$$(cat reports/.checks-status)" -le 1 ] || { echo "linbench check failed ($$(cat reports/.checks-status))"; exit 1; }
	$(VENV)/bin/linbench run --sweep $(SWEEP) $(RUN_DEVICE_ARG) $(DTYPE_ARGS) $(ONLY_ARG) $(if $(RESUME),--resume,) \
	  --after-chunk '$(PAGE_SO_FAR)' -- $(MACHINE_ARG) || [ $$? -eq 1 ]
	$(MAKE) --no-print-directory pages

# CI on a push to main: the commits this machine has no results for yet (HEAD alone on
# an empty results folder), then the pages.  NEW=N caps how many.  Nothing new to record
# (linbench run's exit status 3, with the line that says why) is not a failure here: a
# re-run of the workflow on a commit already measured finds nothing to do.
NEW ?= 10
history: venv valgrind compiler
	@mkdir -p reports
	$(VENV)/bin/asv machine --yes $(MACHINE_ARG) > /dev/null
	$(VENV)/bin/linbench check $(CHECK_DEVICE_ARG) --json --quiet > reports/checks.json || [ $$? -eq 1 ]
	$(VENV)/bin/linbench run --sweep $(SWEEP) $(RUN_DEVICE_ARG) --new $(NEW)$(AFTER_CHUNK_ARG) -- $(MACHINE_ARG); \
	  code=$$?; \
	  [ $$code -le 1 ] || [ $$code -eq 3 ]
	$(MAKE) --no-print-directory pages

# asv's HTML (made to work offline) and the summary page, from whatever .asv/results holds.
pages: venv
	$(VENV)/bin/asv publish
	$(VENV)/bin/linbench localize-asv
	$(MAKE) --no-print-directory report
	@echo "Browse: make serve, then http://127.0.0.1:$(PORT)/ (summary) and http://127.0.0.1:$(PORT)/asv/ (asv)"

# CI on a pull request: is HEAD slower than BASE on the quick cases, or wrong where BASE was right?
gate: venv valgrind
	@[ -n "$(BASE)" ] || { echo "make gate: no merge base with $(BASE_BRANCH); pass BASE=<commit>" >&2; exit 2; }
	@mkdir -p reports
	$(VENV)/bin/linbench gate $(BASE) HEAD --sweep quick $(if $(BENCH),--bench '$(BENCH)',) --json reports/gate.json

# CI keeps .asv/results on the asv-results branch so history accumulates (.ci/results-branch).
results-pull:
	sh .ci/results-branch pull
results-push:
	sh .ci/results-branch push

# The local quick gate with pytest-benchmark: save a run, change something, compare.
quick-save: venv
	$(PY) -m pytest benchmarks/quick_gate -q --benchmark-save=$(or $(NAME),before)
quick-compare: venv
	$(PY) -m pytest benchmarks/quick_gate -q --benchmark-compare --benchmark-compare-fail=median:10%

report: venv
	$(VENV)/bin/linbench report $(CHECKS_ARG)

# The GPU runner's first steps: CUDA must be there (one line and exit 1 otherwise), then its tests.
cuda-visible: venv
	@$(PY) -c "import sys; from linear_impls import gpu; r = gpu.cuda_unavailable_reason(); \
	  print('CUDA is visible' if r is None else f'CUDA is not visible here: {r}'); sys.exit(r is not None)"
test-cuda: venv
	LINBENCH_REQUIRE_CUDA=1 $(PY) -m pytest -q tests/test_cuda.py

# On a machine with an NVIDIA GPU, from a fresh clone: everything CUDA, in minutes (benchmarks/gpu_proof.sh).
gpu-proof:
	bash benchmarks/gpu_proof.sh

# asv's pages load their data over HTTP, so serve reports/ rather than opening files.
serve:
	python3 -m http.server $(PORT) --bind 127.0.0.1 --directory reports

clean:
	rm -rf $(VENV) .asv reports/asv reports/index.html
