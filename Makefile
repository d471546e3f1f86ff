# mlplab: `make test` and `make reproduce` are all a new user needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt

.PHONY: install dev test lint typecheck reproduce quick bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(PY)
	$(PIP) -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(PY)
	$(PIP) -e ".[dev]"
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

lint: dev
	$(PY) -m ruff check src tests benchmarks

typecheck: dev
	$(PY) -m mypy

test: dev lint typecheck
	$(PY) -m pytest -q

reproduce: install
	$(VENV)/bin/mlplab reproduce

quick: install
	$(VENV)/bin/mlplab reproduce --quick

clean:
	rm -rf results report/build .pytest_cache .mypy_cache .ruff_cache
