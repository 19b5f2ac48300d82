# The two commands a new user needs: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check --quiet

.PHONY: demo test lint bench bench-quick clean

$(VENV)/.core: pyproject.toml
	@echo "make: installing gpuvgm and its dependencies (numpy, scipy, pyarrow, numba, tqdm) into $(VENV); first run only, about a minute"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

$(VENV)/.test: pyproject.toml
	@echo "make: installing gpuvgm with its test and dev extras (scikit-learn, rdt, dask, matplotlib, pytest, ruff, mypy...) into $(VENV); first run only, a few minutes"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[test,dev]'
	touch $(VENV)/.core $@

## make demo [ROWS=n]: install, generate the demo table (5M rows unless ROWS), fit, transform,
## invert, print the figures; progress bars on a terminal, one line per phase as it finishes
demo: $(VENV)/.core
	$(VENV)/bin/gpuvgm demo --dir demo_data $(if $(ROWS),--rows $(ROWS))

## make test: install with the test extra and run the whole suite (no GPU needed)
test: $(VENV)/.test
	$(PY) -m pytest

## make lint: ruff (lint and format check), mypy on the package, the import contract
lint: $(VENV)/.test
	$(VENV)/bin/ruff check gpuvgm tests bench
	$(VENV)/bin/ruff format --check gpuvgm tests bench
	$(VENV)/bin/mypy gpuvgm
	$(VENV)/bin/lint-imports

## make bench: the CPU benchmark against scikit-learn (writes bench/results/*.json)
bench: $(VENV)/.test
	$(PY) bench/cpu_vs_sklearn.py

bench-quick: $(VENV)/.test
	$(PY) bench/cpu_vs_sklearn.py --quick

clean:
	rm -rf $(VENV) demo_data build dist *.egg-info .pytest_cache .ruff_cache
