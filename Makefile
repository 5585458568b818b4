# Every user-facing target runs scripts/bootstrap.sh for itself first: it is quick when
# everything is in place, and on a fresh machine it installs what that target needs (the
# demo: the project and a Redis; `make test`: everything, browser and Java included).
# Pass extra arguments with ARGS, e.g. `make demo ARGS="--port 8080"`.

VENV   := .venv
PYTHON := $(VENV)/bin/python
ARGS   ?=

.PHONY: bootstrap test check lint demo bench clean

# Everything the suite needs (the same as `make test` installs).
bootstrap:
	bash scripts/bootstrap.sh test

# Lint and types, then the whole suite against real Redis >= 7.4 servers it starts itself,
# test files spread over up to 4 processes (about 7 minutes on 2 cores).
test: bootstrap
	@$(MAKE) --no-print-directory lint
	$(PYTHON) -m pytest -q -n auto --maxprocesses 4 --dist loadfile $(ARGS)

# ruff (lint + format check) and mypy alone.
check:
	bash scripts/bootstrap.sh check
	@$(MAKE) --no-print-directory lint

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The demo needs the project and a Redis: no dev or engines extras, no browser, no Java.
demo:
	bash scripts/bootstrap.sh demo
	$(PYTHON) -m demo $(ARGS)

bench:
	bash scripts/bootstrap.sh bench
	$(PYTHON) -m benchmarks.run $(ARGS)

# Removes build/test leftovers. Keeps .venv and the cached Redis build
# (~/.cache/feast-redis-hexpire); delete those by hand for a truly fresh start.
clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis .mypy_cache .ruff_cache test-artifacts
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
