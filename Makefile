# The README's two commands: `make demo` (main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CDC    := $(BIN)/cdc
DEMO_SECONDS ?= 60
DEMO_RATE ?= 50

.PHONY: install system-deps stack-up stack-down demo test unit lint typecheck check fixtures

# The compiled hot path (rust/cdc_fastpath) is built where cargo is present; without it cdc sync
# runs on the Python path (cdc/fastpath.py says which path runs).
$(BIN)/.installed: pyproject.toml rust/cdc_fastpath/Cargo.toml rust/cdc_fastpath/Cargo.lock $(wildcard rust/cdc_fastpath/src/*.rs)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,confluent]'
	@if command -v cargo >/dev/null 2>&1; then \
	  $(BIN)/pip install -q ./rust/cdc_fastpath \
	    || echo "warning: the fast path extension (rust/cdc_fastpath) did not build: cdc runs on the Python path"; \
	else \
	  echo "no cargo: the fast path extension is not built, cdc runs on the Python path"; \
	fi
	touch $@

install: $(BIN)/.installed

system-deps:
	bash scripts/install-system-deps.sh

stack-up: install system-deps
	$(CDC) stack up

stack-down: install
	$(CDC) stack down
	$(BIN)/python -m tests.second_stack down

# Start the stack, create the demo shop and capture it, fill it, run a live workload while `cdc sync`
# replicates it into the warehouse (schema `replica`); sync exits once the workload is over and
# everything is applied. The shop is captured before it is filled: its seed rows then reach Kafka
# as changes, also those of page_views, a table without a primary key that Debezium's incremental
# snapshot cannot read.
demo: stack-up
	$(CDC) demo seed --schema-only
	$(CDC) schema install --local-stack
	$(CDC) connector apply
	$(CDC) demo seed
	$(CDC) demo run --rate $(DEMO_RATE) --duration $(DEMO_SECONDS) & \
	  $(CDC) sync --table 'shop.*' --until-idle 10 --progress-every 5; \
	  status=$$?; wait; exit $$status
	$(CDC) topics --prefix cdc.shop.

# Every test, unit and integration, against the real stack (started here if it is not running),
# two at a time: pytest-xdist with two workers, each on a stack of its own (tests/second_stack.py),
# the tests of one module on one worker. `$(BIN)/pytest` alone runs them one at a time on one stack.
# Both stacks get the source's DDL capture (cdc schema install), which the schema-drift tests use.
test: stack-up
	$(CDC) schema install --local-stack
	$(CDC) connector apply
	$(BIN)/python -m tests.second_stack up
	$(BIN)/pytest -n 2 --dist loadfile

unit: install
	$(BIN)/pytest tests/unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

# Re-record tests/fixtures/debezium from the live stack.
fixtures: stack-up
	$(BIN)/python -m tests.fixtures.record
