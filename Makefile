# Every user-facing target goes through scripts/bootstrap.sh first: it is quick
# when everything is in place, and on a fresh machine it installs what is missing.
# Pass extra arguments with ARGS, e.g. `make demo ARGS="--port 8080"`.

VENV   := .venv
PYTHON := $(VENV)/bin/python
ARGS   ?=

.PHONY: bootstrap test demo bench clean

bootstrap:
	bash scripts/bootstrap.sh

test: bootstrap
	$(PYTHON) -m pytest -q $(ARGS)

demo: bootstrap
	$(VENV)/bin/feast-redis-hexpire demo $(ARGS)

bench: bootstrap
	$(PYTHON) -m benchmarks.run $(ARGS)

# Removes build/test leftovers. Keeps .venv and the cached Redis build
# (~/.cache/feast-redis-hexpire); delete those by hand for a truly fresh start.
clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis test-artifacts
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
