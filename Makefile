# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Rebuilt whenever the dependency list changes.
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench-overhead clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "aiocognito needs Python 3.11+")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint,cli]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/aiocognito demo

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -m "not moto"

bench-overhead: $(STAMP)
	$(BIN)/python -m benchmarks.overhead

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist *.egg-info
