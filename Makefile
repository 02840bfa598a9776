# Two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
BIND ?= 127.0.0.1:8000
# The end-to-end tests' node packages (panva's oidc-provider, playwright-core for the
# browser tests), from the npm registry, as package-lock.json pins them.
NODE_TESTS := tests/e2e/node
NODE_STAMP := $(NODE_TESTS)/node_modules/.installed-$(shell sha1sum < $(NODE_TESTS)/package-lock.json | cut -c1-12)

.PHONY: run test lint bench check-config clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt pip setuptools
	$(BIN)/python -m pip install --quiet --no-build-isolation -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	BROKER_PROFILE=$${BROKER_PROFILE:-dev} $(BIN)/token-broker serve --bind $(BIND)

lint: $(STAMP)
	$(BIN)/ruff check service tests bench examples/python
	$(BIN)/ruff format --check service tests bench examples/python
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

$(NODE_STAMP): $(NODE_TESTS)/package.json $(NODE_TESTS)/package-lock.json
	cd $(NODE_TESTS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: lint $(NODE_STAMP)
	$(BIN)/pytest --cov --cov-branch --cov-report=term

bench: $(STAMP)
	$(BIN)/python bench/tokens.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/rooms.py

check-config: $(STAMP)
	$(BIN)/token-broker check-config

clean:
	rm -rf $(VENV) var .coverage .hypothesis $(NODE_TESTS)/node_modules
