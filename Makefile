# Two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
BIND ?= 127.0.0.1:8000

.PHONY: run test lint bench check-config clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	BROKER_PROFILE=$${BROKER_PROFILE:-dev} $(BIN)/token-broker serve --bind $(BIND)

lint: $(STAMP)
	$(BIN)/ruff check service tests bench examples/python
	$(BIN)/ruff format --check service tests bench examples/python
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

test: lint
	$(BIN)/pytest --cov --cov-branch --cov-report=term

bench: $(STAMP)
	$(BIN)/python bench/tokens.py

check-config: $(STAMP)
	$(BIN)/token-broker check-config

clean:
	rm -rf $(VENV) var .coverage .hypothesis
