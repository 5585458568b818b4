"""Shared pytest fixtures.

Tests never mock Redis: everything runs against a real Redis >= 7.4, either
the one in ``REDIS_URL`` (left untouched apart from the keys tests write) or
a private ``redis-server`` started for the session (built once and cached by
``feast_redis_hexpire.local_redis`` if needed).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from devsupport.redis_server import (
    ExternalRedis,
    LocalRedisServer,
    check_server_version,
)

RedisServer = LocalRedisServer | ExternalRedis


# --------------------------------------------------------------------------
# Redis server and clients
# --------------------------------------------------------------------------


def _live_log(config: pytest.Config) -> Callable[[str], None]:
    """Print past pytest's output capture: a first-time Redis build takes
    minutes and should not look like a hang."""
    capman = config.pluginmanager.getplugin("capturemanager")

    def log(message: str) -> None:
        if capman is None:
            print(message, flush=True)
            return
        with capman.global_and_fixture_disabled():
            print(message, flush=True)

    return log


@pytest.fixture(scope="session")
def redis_server(pytestconfig: pytest.Config) -> Iterator[RedisServer]:
    """One server per session: starting Redis is cheap, but feast tests are many.

    ``.owned`` tells tests whether they may FLUSHALL / reconfigure it: never a
    user's ``REDIS_URL`` server, which may hold other data.
    """
    url = os.environ.get("REDIS_URL")
    if url:
        check_server_version(url)
        yield ExternalRedis.from_url(url)
        return
    with LocalRedisServer(log=_live_log(pytestconfig)) as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """Raw client with bytes replies (what the store writes is binary)."""
    client = redis.Redis.from_url(redis_server.url)
    if redis_server.owned:
        client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A text-reply client that never flushes: for modules sharing data across tests
    (the demo's, the CLI's), where `redis_client`'s FLUSHALL would wipe it."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


# --------------------------------------------------------------------------
# Isolation helpers
# --------------------------------------------------------------------------


@pytest.fixture
def unique_project() -> str:
    """A Feast project name no other test (or user data in REDIS_URL) uses."""
    return f"t_{uuid.uuid4().hex[:8]}"
