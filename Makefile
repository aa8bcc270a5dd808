# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Rebuilt whenever the dependency list changes.
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench bench-quick bench-overhead bench-fake bench-engine \
	bench-bulk clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "aiocognito needs Python 3.11+")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint,cli,otel,redis]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/aiocognito demo

# One pytest worker per core, at most 4: most of the suite waits on sockets and processes, and
# its longest tests (the engine model, SIGKILL-and-resume) run beside the rest.
test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest --numprocesses auto --maxprocesses 4 --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest --numprocesses auto --maxprocesses 4 --dist worksteal -m "not moto"

# Benchmarks print Markdown tables; the recorded figures are in benchmarks/README.md and the
# plots go to benchmarks/results/. They need the bench extra (matplotlib), installed on demand.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,lint,cli,otel,redis,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.engine --runs 3 --plots benchmarks/results \
		--json benchmarks/results/engine.json
	$(BIN)/python -m benchmarks.overhead --runs 5 --json benchmarks/results/overhead.json
	$(BIN)/python -m benchmarks.bulk --runs 3 --json benchmarks/results/memory.json
	$(BIN)/python -m benchmarks.fake_server --runs 3
	$(BIN)/python -m benchmarks.fake_server --memory

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.engine --runs 1 --updates 1000 --time-limit 30 \
		--plots benchmarks/results/quick
	$(BIN)/python -m benchmarks.overhead --runs 1 --calls 1000
	$(BIN)/python -m benchmarks.bulk --runs 1 --rate-rows 1000 --memory-rows 2000 20000
	$(BIN)/python -m benchmarks.fake_server --runs 1 --seconds 2

bench-overhead: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.overhead --runs 5

bench-engine: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.engine --runs 3 --plots benchmarks/results \
		--json benchmarks/results/engine.json

bench-bulk: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.bulk --runs 3

bench-fake: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.fake_server --runs 3
	$(BIN)/python -m benchmarks.fake_server --memory

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist *.egg-info
