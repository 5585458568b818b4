"""The store against servers that are gone for good (stopped: connections refused), on a
process whose pools are warm: every path (sync and async, read and write; standalone,
Sentinel and Cluster) fails within one retry budget, 3.5-7 s with the defaults.

The round trip's retry once wrapped a pool checkout and a reconnect that each retried on
their own with the same policy, so the budgets multiplied: a warm process took about 41 s
to fail a call, a fresh one 5 s. The restart tests (test_faults_server.py) are what the
checkout retry is for: a restart is still ridden through within the one budget."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis

from devsupport.redis_server import LocalRedisServer
from devsupport.topologies import Cluster, SentinelGroup
from feast_redis_hexpire import RedisHexpireOnlineStore, clients
from feast_redis_hexpire.config import RedisHexpireOnlineStoreConfig
from feast_redis_hexpire.errors import HexpireError
from tests.support.faults import VIEWS, RetriedErrors, base_time, stamped_rows
from tests.support.store import repo_config, user_key

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

USERS = [f"u{i}" for i in range(60)]
RETRY_ATTEMPTS = RedisHexpireOnlineStoreConfig(connection_string="localhost").retry_attempts
SLACK_S = 1.5  # a busy 2-core machine: thread and event-loop scheduling, refused connects


def backoff_budget(retries: int) -> tuple[float, float]:
    """The least and most the backoff sleeps over `retries` retries: redis-py's
    EqualJitterBackoff sleeps between half and all of min(cap, base * 2**n) after the nth
    failure (3.5 and 7 s for the default 6 retries)."""
    full = [min(clients.BACKOFF_CAP_S, clients.BACKOFF_BASE_S * 2**n) for n in range(1, retries + 1)]
    return sum(full) / 2, sum(full)


@pytest.fixture(autouse=True)
def fresh_clients():
    clients.reset_clients()
    yield
    clients.reset_clients()


def time_each_path(config, stop: Callable[[], object]) -> dict[str, tuple[float, BaseException | None]]:
    """Warm every path (a write and a read, sync and async, on one event loop), call
    `stop`, then time a write and a read on each path, all four at once."""
    store, view, base = RedisHexpireOnlineStore(), VIEWS[0], base_time()
    rows, keys = stamped_rows(view, USERS, 1, base), [user_key(uid) for uid in USERS]
    measured: dict[str, tuple[float, BaseException | None]] = {}

    async def timed(name: str, operation: Callable) -> None:
        started = time.monotonic()
        try:
            await operation()
        except Exception as exc:  # noqa: BLE001 - the error is what is measured
            measured[name] = (time.monotonic() - started, exc)
        else:
            measured[name] = (time.monotonic() - started, None)

    async def main() -> None:
        try:
            store.online_write_batch(config, view, rows, None)
            assert len(store.online_read(config, view, keys)) == len(keys)
            await store.online_write_batch_async(config, view, rows, None)
            assert len(await store.online_read_async(config, view, keys)) == len(keys)
            await asyncio.to_thread(stop)
            await asyncio.gather(
                timed("sync write", lambda: asyncio.to_thread(store.online_write_batch, config, view, rows, None)),
                timed("sync read", lambda: asyncio.to_thread(store.online_read, config, view, keys)),
                timed("async write", lambda: store.online_write_batch_async(config, view, rows, None)),
                timed("async read", lambda: store.online_read_async(config, view, keys)),
            )
        finally:
            await store.close()

    asyncio.run(main())
    return measured


def check(topology: str, measured: dict[str, tuple[float, BaseException | None]], at_least: float) -> None:
    low, high = backoff_budget(RETRY_ATTEMPTS)
    report = {name: f"{seconds:.2f} s {type(error).__name__}" for name, (seconds, error) in sorted(measured.items())}
    print(f"\n{topology}, servers gone (budget {low:.1f}-{high:.1f} s): {report}")
    assert len(measured) == 4, report
    for name, (seconds, error) in measured.items():
        assert isinstance(error, (redis.ConnectionError, redis.RedisClusterException, HexpireError)), (name, error)
        assert at_least <= seconds <= high + SLACK_S, (name, seconds)


@pytest.mark.both_servers
def test_a_stopped_server_fails_every_path_within_one_budget(tmp_path, unique_project):
    """Standalone: each call tries 1 + retry_attempts times, asking the retry policy once
    per failure (28 for the four calls, not 7 x 7 each), and spends the backoff between."""
    with LocalRedisServer(workdir=tmp_path / "redis", log=lambda _: None) as server:
        config = repo_config(server.connection_string, unique_project, tmp_path)
        with RetriedErrors() as retried:
            measured = time_each_path(config, server.stop)
    check("standalone", measured, at_least=backoff_budget(RETRY_ATTEMPTS)[0])
    assert retried.count == 4 * (1 + RETRY_ATTEMPTS)


def test_a_stopped_sentinel_primary_fails_every_path_within_one_budget(tmp_path, unique_project):
    """Sentinel: the primary and its replica stopped, the sentinels still up and naming the
    stopped primary. Every try asks the sentinels again and is refused."""
    with SentinelGroup(tmp_path / "sentinel") as group:
        group.start()
        config = repo_config(
            group.connection_string,
            unique_project,
            tmp_path,
            redis_type="redis_sentinel",
            sentinel_master=group.master_name,
        )
        data_nodes = group.servers[:2]
        with RetriedErrors() as retried:
            measured = time_each_path(config, lambda: [server.stop() for server in data_nodes])
    check("sentinel", measured, at_least=backoff_budget(RETRY_ATTEMPTS)[0])
    assert retried.count == 4 * (1 + RETRY_ATTEMPTS)


@pytest.mark.parametrize("stopped", ["every node", "one primary"])
def test_a_stopped_cluster_node_fails_every_path_within_one_budget(tmp_path, unique_project, stopped):
    """Cluster (3 primaries, no replicas): redis-py's cluster client retries without a
    pause, refreshing its slot map, and gives up once no node or no slot owner answers:
    well within the budget, and never the budget times the reconnects."""
    with Cluster(tmp_path / "cluster", replicas=0) as cluster:
        cluster.start()
        config = repo_config(cluster.connection_string, unique_project, tmp_path, redis_type="redis_cluster")
        gone = cluster.servers if stopped == "every node" else cluster.servers[:1]
        measured = time_each_path(config, lambda: [server.stop() for server in gone])
    check(f"cluster, {stopped} stopped", measured, at_least=0.0)
