# Every user-facing target goes through scripts/bootstrap.sh first: it is quick
# when everything is in place, and on a fresh machine it installs what is missing.
# Pass extra arguments with ARGS, e.g. `make demo ARGS="--port 8080"`.

VENV   := .venv
PYTHON := $(VENV)/bin/python
ARGS   ?=

.PHONY: bootstrap test check lint demo bench clean

bootstrap:
	bash scripts/bootstrap.sh

# The whole suite against a real Redis >= 7.4 it starts itself (about 10 minutes).
test: bootstrap
	$(PYTHON) -m pytest -q $(ARGS)

# ruff (lint + format check) and mypy: what CI runs before the tests.
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
