"""Benchmarks for feast-redis-hexpire: `python -m benchmarks.run --help`.

Nothing here asserts on timings; the harness measures and reports."""
