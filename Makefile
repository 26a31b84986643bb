# `make run` and `make test` set up .venv themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Everything the house rules check, on every `make test`: lint, format, types, then the tests.
SOURCES := orc actors eventlog tests bench

.PHONY: run test check lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/orc

test: check
	$(BIN)/pytest -q

# The static checks alone (seconds): mypy reads its files and strictness from pyproject.toml.
check: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy

lint: check

bench: $(STAMP)
	for b in eventlog launch replay propagation scheduler docker_launch metrics cli dashboard; do \
		echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache
