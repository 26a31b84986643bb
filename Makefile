# `make run` and `make test` set up .venv themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/orc

test: $(STAMP)
	$(BIN)/ruff check orc actors eventlog tests bench
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check orc actors eventlog tests bench
	$(BIN)/ruff format --check orc actors eventlog tests bench

bench: $(STAMP)
	for b in eventlog launch replay propagation scheduler docker_launch; do \
		echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) data .pytest_cache
