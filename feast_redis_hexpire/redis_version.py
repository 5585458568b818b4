"""The Redis version this store needs, and how to read one.

One constant and one parser for every check: the store's start-up check, the operator
CLI's `doctor`, and the dev tooling that finds or builds a local `redis-server`.
Nothing here imports Feast, so tools can use it without the multi-second Feast import.
"""

from __future__ import annotations

import re

MIN_SERVER_VERSION: tuple[int, int, int] = (7, 4, 0)
"""Per-field hash expiry (HEXPIRE, HPEXPIREAT, HTTL) arrived in Redis 7.4."""

HSETEX_VERSION: tuple[int, int, int] = (8, 0, 0)
"""HSETEX (set fields and their expiry in one command) arrived in Redis 8.0."""

_VERSION = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int]:
    """`(major, minor, patch)` from `redis-server --version` output (`v=8.10.2`), an INFO or
    HELLO `version` value, or a bare `7.4`."""
    match = re.search(r"\bv=(\d+)\.(\d+)\.(\d+)", text) or _VERSION.search(text)
    if not match:
        raise ValueError(f"no Redis version number found in {text[:80]!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def version_text(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))
