# The README's commands.  Everything installs into ./.venv from a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
# CI and this project's benchmarks pin torch; pyproject keeps a range for users.
TORCH_PIN ?= torch==2.13.0
# This machine keeps the CPU build of torch on disk; elsewhere pip uses its index.
PIP_FIND := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP := $(PY) -m pip install --disable-pip-version-check -q $(PIP_FIND)

.PHONY: venv test lint check bench report serve clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) "$(TORCH_PIN)"
	$(PIP) -e ".[dev]"
	touch $@

lint: venv
	$(VENV)/bin/ruff check .

# The test command (README, .ci/run).
test: venv lint
	$(PY) -m pytest -q

check: venv
	$(VENV)/bin/linbench check

clean:
	rm -rf $(VENV) .asv reports/asv reports/index.html
