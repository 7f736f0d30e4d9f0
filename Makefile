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
# `make gate`: the commit HEAD is compared with, and optionally a benchmark regex.
BASE_BRANCH ?= origin/main
BASE ?= $(shell git merge-base $(BASE_BRANCH) HEAD 2>/dev/null)
BENCH ?=

.PHONY: venv test lint check bench history pages gate quick-save quick-compare results-pull results-push report serve clean browser valgrind compiler

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

# The main job: gates, the sweep through asv on HEAD, asv's HTML and the summary page.
# SWEEP=quick|default|full picks the sweep; RESUME=1 keeps what an interrupted run recorded.
bench: venv valgrind compiler
	@mkdir -p reports
	$(VENV)/bin/asv machine --yes $(MACHINE_ARG) > /dev/null
	$(VENV)/bin/linbench check --json --quiet > reports/checks.json || [ $$? -eq 1 ]
	$(VENV)/bin/linbench run --sweep $(SWEEP) $(if $(RESUME),--resume,) -- $(MACHINE_ARG) || [ $$? -eq 1 ]
	$(MAKE) --no-print-directory pages

# CI on a push to main: the commits this machine has no results for yet (HEAD alone on
# an empty results folder), then the pages.  NEW=N caps how many.  Nothing new to record
# (linbench run's exit status 3, with the line that says why) is not a failure here: a
# re-run of the workflow on a commit already measured finds nothing to do.
NEW ?= 10
history: venv valgrind compiler
	@mkdir -p reports
	$(VENV)/bin/asv machine --yes $(MACHINE_ARG) > /dev/null
	$(VENV)/bin/linbench check --json --quiet > reports/checks.json || [ $$? -eq 1 ]
	$(VENV)/bin/linbench run --sweep $(SWEEP) --new $(NEW) -- $(MACHINE_ARG); code=$$?; \
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
	$(VENV)/bin/linbench report

# asv's pages load their data over HTTP, so serve reports/ rather than opening files.
serve:
	python3 -m http.server $(PORT) --bind 127.0.0.1 --directory reports

clean:
	rm -rf $(VENV) .asv reports/asv reports/index.html
