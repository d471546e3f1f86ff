# mlplab: `make test` and `make reproduce` are all a new user needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# constraints.txt pins what `make constraints` resolved on Python 3.11, and some of its pins need 3.11 (numpy 2.4,
# for one); on Python 3.10 the ranges of pyproject.toml apply instead.
PINS   := $(shell $(PYTHON) -c 'import sys; print("-c constraints.txt" if sys.version_info >= (3, 11) else "")')
PIP    := $(PY) -m pip install -q --disable-pip-version-check $(PINS)

.PHONY: install dev test lint typecheck reproduce quick bench clean constraints wheel-check

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
	$(PY) -m ruff check src tests benchmarks conftest.py

typecheck: dev
	$(PY) -m mypy

test: dev lint typecheck
	$(PY) -m pytest -q

reproduce: install
	$(VENV)/bin/mlplab reproduce

quick: install
	$(VENV)/bin/mlplab reproduce --quick

# constraints.txt pins every package `.[dev]` installs: pip-compile (pip-tools) resolves pyproject.toml's ranges,
# keeping the pins already in the file (delete a line, or the file, to move a package on). Two edits after it:
# the project's own line goes (the dev extra names mlplab[dask,...], an extra of itself), and torch is pinned
# without its local label (+cpu), so the pin holds wherever the CPU wheel comes from.
constraints: | $(PY)
	$(PIP) pip-tools==7.7.0
	CUSTOM_COMPILE_COMMAND="make constraints" $(PY) -m piptools compile -q --extra dev --strip-extras \
		--no-emit-index-url --no-emit-find-links --annotation-style line -o constraints.txt pyproject.toml
	sed -e '/^mlplab @ /d' -e 's/^\(torch==[0-9.]*\)+cpu/\1    /' constraints.txt > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

# The package as users get it: build the wheel, install it into a clean venv (pinned by constraints.txt, downloads
# from pip's cache) and run it from a folder outside the checkout, with an empty kernel cache. A C file or data
# file left out of the wheel then fails here (`doctor --strict`: a kernel on torch is an error) instead of
# silently running the slow path. CI runs it after `make test`.
WHEEL_CHECK ?= $(or $(TMPDIR),/tmp)/mlplab-wheel-check
wheel-check: | $(PY)
	rm -rf "$(WHEEL_CHECK)" && mkdir -p "$(WHEEL_CHECK)/tree"
	cp -R pyproject.toml README.md src "$(WHEEL_CHECK)/tree/"
	rm -rf "$(WHEEL_CHECK)"/tree/src/*.egg-info  # stale build metadata lists files the package data may no longer name
	$(PY) -m pip wheel -q --disable-pip-version-check --no-deps -w "$(WHEEL_CHECK)/dist" "$(WHEEL_CHECK)/tree"
	$(PYTHON) -m venv "$(WHEEL_CHECK)/venv"
	"$(WHEEL_CHECK)/venv/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt \
		"$(WHEEL_CHECK)"/dist/mlplab-*.whl
	cd "$(WHEEL_CHECK)" && MLPLAB_CACHE="$(WHEEL_CHECK)/cache" venv/bin/mlplab doctor --strict
	cd "$(WHEEL_CHECK)" && MLPLAB_CACHE="$(WHEEL_CHECK)/cache" venv/bin/mlplab reproduce --tiny --no-progress \
		--results run/results --report run/report

clean:
	rm -rf results report/build .pytest_cache .mypy_cache .ruff_cache
