"""The per-event API under failure (issue 22), sync and async, on Redis and Valkey:

- the server restarted (SIGKILL or SHUTDOWN NOSAVE, AOF with `appendfsync always`) while
  events are written, one per call, in batches and coalesced: no write fails, and every
  acknowledged event is stored afterwards;
- a connection cut after the server ran a write and before its reply arrived: the retry
  rewrites the same event (newest wins on equal event times), so nothing is lost or
  doubled and the caller gets one answer;
- cut connections at random points (mid-command, mid-reply) under load: every acknowledged
  event is there.

Every test starts its own server, because it breaks it.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from feast import FeatureStore

from devsupport.redis_server import LocalRedisServer
from feast_redis_hexpire import AsyncEventWriter, EventWriter, clients
from tests.support.faults import DroppingProxy, RetriedErrors, aof_workdir
from tests.support.store import USER, repo_config, stream_view

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]

PERSISTENT = ["--appendonly", "yes", "--appendfsync", "always"]
USERS = [f"u{i}" for i in range(40)]
SOURCE = "user_activity_push"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalRedisServer]:
    with (
        aof_workdir(tmp_path / "redis") as workdir,
        LocalRedisServer(extra_args=PERSISTENT, workdir=workdir, log=lambda _: None) as started,
    ):
        yield started
    clients.reset_clients()


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    clients.reset_clients()
    yield
    clients.reset_clients()


def feature_store(connection_string: str, project: str, path: Path) -> FeatureStore:
    store = FeatureStore(config=repo_config(connection_string, project, path))
    store.apply([USER, stream_view()])
    return store


class Generations:
    """Event `g` of a user carries tx_count_5m = g at event time base + g ms: the stored
    value says which acknowledged write it was."""

    def __init__(self) -> None:
        self.base = datetime.now(timezone.utc) - timedelta(seconds=60)
        self.acked: dict[str, int] = {}
        self.errors: list[str] = []
        self.writes = 0

    def event(self, user: str, generation: int) -> dict[str, Any]:
        return {
            "user_id": user,
            "tx_count_5m": generation,
            "last_amount": generation / 2,
            "event_timestamp": self.base + timedelta(milliseconds=generation),
        }

    def acknowledge(self, users: list[str], generation: int) -> None:
        for user in users:
            self.acked[user] = generation
        self.writes += 1


def stored(client: redis.Redis, project: str) -> dict[str, int]:
    out = {}
    for user in USERS:
        value = client.hget(f"fs:{project}:user_id={user}", "user_activity:tx_count_5m")
        if value is not None:
            out[user] = int(value)
    return out


def run_writes(store: FeatureStore, mode: str, stop: threading.Event, record: Generations) -> None:
    """Write generation after generation until `stop`: sync one event per call or a batch
    per call, async one event per call (every user at once), with and without coalescing."""
    rng = random.Random(5)

    def users() -> list[str]:
        return rng.sample(USERS, 10)

    if mode in ("sync", "sync-batch"):
        writer = EventWriter(store, SOURCE)
        generation = 0
        while not stop.is_set():
            generation += 1
            chosen = users()
            try:
                if mode == "sync":
                    for user in chosen:
                        assert writer.write(record.event(user, generation)).written == 1
                        record.acknowledge([user], generation)
                else:
                    result = writer.write([record.event(user, generation) for user in chosen])
                    assert result.written == len(chosen)
                    record.acknowledge(chosen, generation)
            except Exception as exc:  # noqa: BLE001 - every failure is reported
                record.errors.append(f"generation {generation}: {type(exc).__name__}: {exc}")
        return

    async def main() -> None:
        window = 2.0 if mode == "async-coalesced" else None
        writer = AsyncEventWriter(store, SOURCE, coalesce_window_ms=window)
        generation = 0

        async def one(user: str, generation: int) -> None:
            try:
                result = await writer.write(record.event(user, generation))
                assert result.written == 1
                record.acknowledge([user], generation)
            except Exception as exc:  # noqa: BLE001
                record.errors.append(f"generation {generation} {user}: {type(exc).__name__}: {exc}")

        while not stop.is_set():
            generation += 1
            await asyncio.gather(*(one(user, generation) for user in users()))
        await writer.aclose()
        await store._get_provider().online_store.close()

    asyncio.run(main())


def under_fault(store: FeatureStore, mode: str, fault: Callable[[], None]) -> Generations:
    record = Generations()
    stop = threading.Event()

    def inject() -> None:
        try:
            fault()
        finally:
            stop.set()

    injector = threading.Thread(target=inject)
    injector.start()
    run_writes(store, mode, stop, record)
    injector.join()
    return record


@pytest.mark.both_servers
@pytest.mark.parametrize("mode", ["sync", "sync-batch", "async", "async-coalesced"])
def test_restarts_mid_write_fail_no_write_and_lose_no_acknowledged_event(server, tmp_path, unique_project, mode):
    store = feature_store(server.connection_string, unique_project, tmp_path)
    rng = random.Random(17)
    downtimes: list[float] = []

    def restarts() -> None:
        time.sleep(0.5)
        for i in range(3):
            time.sleep(rng.uniform(0.2, 0.5))
            downtimes.append(server.restart("kill" if i % 2 == 0 else "shutdown", down_for=rng.uniform(0.0, 0.3)))
        time.sleep(0.4)

    with RetriedErrors() as retried:
        record = under_fault(store, mode, restarts)
    print(f"\n[{mode}] restarts took {[round(d, 3) for d in downtimes]} s; {record.writes} writes acked")
    assert retried.count > 0, "no restart hit a write in flight"
    assert record.errors == []
    assert record.acked, "nothing was written"
    assert stored(redis.Redis(port=server.port), unique_project) == record.acked


@pytest.mark.both_servers
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_reply_lost_after_the_write_ran_is_retried_once_and_stores_the_event_once(
    server, tmp_path, unique_project, mode
):
    proxy = DroppingProxy(server.port)
    try:
        store = feature_store(f"127.0.0.1:{proxy.port}", unique_project, tmp_path)
        record = Generations()
        event = record.event("u1", 7)
        if mode == "sync":
            writer = EventWriter(store, SOURCE)
            writer.write(record.event("u0", 1))  # connected
            proxy.armed.set()
            result = writer.write(event)
        else:

            async def write() -> Any:
                writer = AsyncEventWriter(store, SOURCE)
                await writer.write(record.event("u0", 1))
                proxy.armed.set()
                try:
                    return await writer.write(event)
                finally:
                    await store._get_provider().online_store.close()

            result = asyncio.run(write())
        assert proxy.drops == 1
        assert result.written == 1  # the rerun found its own event time: equal, written again
        client = redis.Redis(port=server.port)
        key = f"fs:{unique_project}:user_id=u1"
        assert client.hget(key, "user_activity:tx_count_5m") == b"7"
        assert client.hlen(key) == 3  # _ts and the two features, nothing else
    finally:
        proxy.close()


@pytest.mark.both_servers
@pytest.mark.parametrize("mode", ["sync-batch", "async-coalesced"])
def test_connections_cut_at_random_points_lose_no_acknowledged_event(server, tmp_path, unique_project, mode):
    proxy = DroppingProxy(server.port)
    try:
        store = feature_store(f"127.0.0.1:{proxy.port}", unique_project, tmp_path)

        def cuts() -> None:
            time.sleep(0.3)
            proxy.cut_at_random(seed=9, max_request_bytes=6000, max_reply_bytes=400)
            time.sleep(2.0)
            proxy.stop_cutting()
            time.sleep(0.3)

        with RetriedErrors() as retried:
            record = under_fault(store, mode, cuts)
        assert proxy.cuts > 0 and retried.count > 0
        assert record.errors == []
        assert stored(redis.Redis(port=server.port), unique_project) == record.acked
    finally:
        proxy.close()
