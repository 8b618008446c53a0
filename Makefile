# One-command entry points. Everything installs into .venv: the import name `supervisor`
# would otherwise collide with supervisord's package.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# SDK 0.25 workers run in their own venv beside the 0.23 one (a process imports one version).
SDK025_VENV := .venv-sdk025
SDK025_STAMP := $(SDK025_VENV)/.installed
SDK025_PIN := iii-sdk==0.25.0

.PHONY: up test typecheck bench sdk-suite lint fmt services deploy-tools clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@ $(STAMP)

up: $(STAMP)
	$(BIN)/iii-supervisor up $(ARGS)

$(SDK025_STAMP): Makefile
	$(PY) -m venv $(SDK025_VENV)
	$(SDK025_VENV)/bin/pip install -q '$(SDK025_PIN)' hypothesis
	touch $@

test: $(TEST_STAMP) $(SDK025_STAMP) services deploy-tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not serial" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -q -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: none selected

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

bench: $(TEST_STAMP) $(SDK025_STAMP) services
	$(BIN)/python -m tests.perf.run_all

# The official SDK's own tests (fetched from PyPI at run time, run outside the tree).
sdk-suite: $(TEST_STAMP) services
	$(BIN)/python -m tests.compat.official_suite $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(TEST_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Start Redis / RabbitMQ when they are installed here but stopped (commands from the machine notes).
services:
	@bash .ci/services.sh

# systemd-analyze for the unit's tests (Debian's systemd package; hadolint comes with the test
# extra). Never fails: without it those tests skip and say why.
deploy-tools:
	@command -v systemd-analyze >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd; } >/dev/null 2>&1; } || true

clean:
	rm -rf $(VENV) $(SDK025_VENV) .pytest_cache build *.egg-info
