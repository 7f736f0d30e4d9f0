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

.PHONY: venv test lint check bench report serve clean browser

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) "$(TORCH_PIN)"
	$(PIP) -e ".[dev]"
	touch $@

lint: venv
	$(VENV)/bin/ruff check .

# The browser tests drive Debian's chromium; installed here when we may (root with apt).
browser:
	@command -v chromium > /dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; \
	  else echo "chromium not installed: the browser tests will be skipped"; fi; }

# The test command (README, .ci/run).
test: venv lint browser
	$(PY) -m pytest -q

check: venv
	$(VENV)/bin/linbench check

# The main job: gates, the sweep through asv on HEAD, asv's HTML and the summary page.
# SWEEP=quick|default|full picks the sweep; RESUME=1 keeps what an interrupted run recorded.
bench: venv
	@mkdir -p reports
	$(VENV)/bin/asv machine --yes > /dev/null
	$(VENV)/bin/linbench check --json --quiet > reports/gates.json || [ $$? -eq 1 ]
	$(VENV)/bin/linbench run --sweep $(SWEEP) $(if $(RESUME),--resume,) || [ $$? -eq 1 ]
	$(VENV)/bin/asv publish
	$(VENV)/bin/linbench localize-asv
	$(MAKE) --no-print-directory report
	@echo "Browse: make serve, then http://127.0.0.1:$(PORT)/ (summary) and http://127.0.0.1:$(PORT)/asv/ (asv)"

report: venv
	$(VENV)/bin/linbench report

# asv's pages load their data over HTTP, so serve reports/ rather than opening files.
serve:
	python3 -m http.server $(PORT) --bind 127.0.0.1 --directory reports

clean:
	rm -rf $(VENV) .asv reports/asv reports/index.html
