"""The per-event API on Redis Cluster (one round trip per primary for a batch, sync and
async) and behind Sentinel, through a real FeatureStore."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import pytest
from feast import FeatureStore

from devsupport.topologies import HOST, Cluster, SentinelGroup
from feast_redis_hexpire import AsyncEventWriter, EventWriter, clients
from tests.support.store import USER, repo_config, stream_view
from tests.support.topology import count_round_trips

pytestmark = pytest.mark.topology

SOURCE = "user_activity_push"
USERS = [f"u{i:04d}" for i in range(200)]


def events(count: int, generation: int) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc)
    return [{"user_id": u, "tx_count_5m": generation, "event_timestamp": now} for u in USERS[:count]]


def online(store: FeatureStore, users: list[str]) -> list[Any]:
    rows = [{"user_id": u} for u in users]
    return store.get_online_features(["user_activity:tx_count_5m"], rows).to_dict()["tx_count_5m"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, server_kind):
    with Cluster(tmp_path_factory.mktemp("cluster")) as started:
        started.start()
        yield started
    clients.reset_clients()


@pytest.mark.both_servers
def test_on_cluster_a_batch_is_one_round_trip_per_primary(cluster, tmp_path, unique_project):
    config = repo_config(cluster.connection_string, unique_project, tmp_path, redis_type="redis_cluster")
    store = FeatureStore(config=config)
    store.apply([USER, stream_view()])
    writer = EventWriter(store, SOURCE)
    writer.write(events(200, 1))  # connections to every primary
    primaries = {f"{HOST}:{port}" for port in cluster.primary_ports()}
    with count_round_trips() as trips:
        assert writer.write(events(200, 2)).written == 200
    assert trips == dict.fromkeys(primaries, 1)
    with count_round_trips() as single:
        assert writer.write(events(1, 3)).written == 1
    assert sum(single.values()) == 1
    assert online(store, USERS) == [3] + [2] * 199

    async def write_async() -> dict[str, int]:
        async_writer = AsyncEventWriter(store, SOURCE)
        await async_writer.write(events(200, 4))
        with count_round_trips() as async_trips:
            assert (await async_writer.write(events(200, 5))).written == 200
        await store._get_provider().online_store.close()
        return async_trips

    assert asyncio.run(write_async()) == dict.fromkeys(primaries, 1)
    assert online(store, USERS) == [5] * 200


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory, server_kind):
    with SentinelGroup(tmp_path_factory.mktemp("sentinel"), sentinels=3) as group:
        group.start()
        yield group
    clients.reset_clients()


def test_behind_sentinel_events_are_written_sync_and_async(sentinel, tmp_path, unique_project):
    config = repo_config(
        sentinel.connection_string,
        unique_project,
        tmp_path,
        redis_type="redis_sentinel",
        sentinel_master=sentinel.master_name,
    )
    store = FeatureStore(config=config)
    store.apply([USER, stream_view()])
    assert EventWriter(store, SOURCE).write(events(20, 1)).written == 20

    async def write_async() -> int:
        writer = AsyncEventWriter(store, SOURCE, coalesce_window_ms=1)
        results = await asyncio.gather(*(writer.write(event) for event in events(20, 2)))
        await store._get_provider().online_store.close()
        return sum(result.written for result in results)

    assert asyncio.run(write_async()) == 20
    assert online(store, USERS[:20]) == [2] * 20
