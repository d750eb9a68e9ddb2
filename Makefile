# Two commands are all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: install demo test pytest lint bench-registry clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mlops demo

lint: $(STAMP)
	$(BIN)/ruff check mlops tests bench
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint pytest

bench-registry: $(STAMP)
	$(BIN)/python bench/registry.py

clean:
	rm -rf $(VENV) .mlops .pytest_cache .mypy_cache .ruff_cache
