# Every user-facing target goes through scripts/bootstrap.sh first: it is quick
# when everything is in place, and on a fresh machine it installs what is missing.
# Pass extra arguments with ARGS, e.g. `make demo ARGS="--port 8080"`.

VENV   := .venv
PYTHON := $(VENV)/bin/python
ARGS   ?=

.PHONY: bootstrap test check demo bench clean

bootstrap:
	bash scripts/bootstrap.sh

# Lint and types, then the whole suite against real Redis >= 7.4 servers it starts itself,
# test files spread over up to 4 processes (about 7 minutes on 2 cores).
test: check
	$(PYTHON) -m pytest -q -n auto --maxprocesses 4 --dist loadfile $(ARGS)

# ruff (lint + format check) and mypy alone.
check: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

demo: bootstrap
	$(PYTHON) -m demo $(ARGS)

bench: bootstrap
	$(PYTHON) -m benchmarks.run $(ARGS)

# Removes build/test leftovers. Keeps .venv and the cached Redis build
# (~/.cache/feast-redis-hexpire); delete those by hand for a truly fresh start.
clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis .mypy_cache .ruff_cache test-artifacts
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
