"""The Redis Streams ingester on a real Redis Cluster (3 primaries, 3 replicas) and behind
Sentinel, Redis and Valkey: the stream key on one node, each batch's writes one round trip
per node holding its entities, and a Sentinel failover in the middle of ingestion that
loses no event."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from feast import FeatureStore
from redis.cluster import RedisCluster

from devsupport.topologies import HOST, Cluster, SentinelGroup, admin
from feast_redis_hexpire import clients
from feast_redis_hexpire.stream_ingest import StreamIngester, run_until
from tests.support.ingest import SOURCE, drained, make_store, xadd_all
from tests.support.topology import count_round_trips

pytestmark = [pytest.mark.topology, pytest.mark.both_servers, pytest.mark.timeout(240)]


def entries(users: list[str], generation: int) -> list[dict[str, str]]:
    when = datetime.now(timezone.utc) - timedelta(seconds=5)
    return [
        {
            "user_id": u,
            "tx_count_5m": str(generation),
            "last_amount": f"{generation}.5",
            "event_timestamp": when.isoformat(),
        }
        for u in users
    ]


def served(store: FeatureStore, users: list[str]) -> list[Any]:
    rows = [{"user_id": u} for u in users]
    return store.get_online_features(features=["activity:tx_count_5m"], entity_rows=rows).to_dict()["tx_count_5m"]


# ---------------------------------------------------------------- Cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, server_kind) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("cluster")) as started:
        started.start()
        yield started
    clients.reset_clients()


def test_on_a_cluster_a_batch_is_one_round_trip_per_node(cluster, tmp_path, unique_project):
    store = make_store(tmp_path, cluster.connection_string, unique_project, redis_type="redis_cluster")
    raw = RedisCluster(host=HOST, port=cluster.ports[0])
    stream = f"{{{unique_project}}}:events"  # a hash tag: the dead letters share its slot
    users = [f"u{i}" for i in range(300)]
    ingester = StreamIngester(store, SOURCE, stream, "feast", consumer="c1", batch=1000)
    xadd_all(raw, stream, entries(users, 1))
    run_until(ingester, lambda: drained(raw, stream, "feast"))  # every node connected, dead letter once
    xadd_all(raw, stream, [{"user_id": "bad", "tx_count_5m": "x", "event_timestamp": "1"}])
    run_until(ingester, lambda: drained(raw, stream, "feast"))
    ingester._next_claim = time.monotonic() + 3600
    xadd_all(raw, stream, entries(users, 2) + [{"user_id": "bad", "tx_count_5m": "x", "event_timestamp": "1"}])

    with count_round_trips() as trips:
        step = ingester.run_once(block_ms=0)
    assert (step.entries, step.written, len(step.dead_letters)) == (301, 300, 1)
    stream_node = raw.get_node_from_key(stream)
    stream_at = f"{stream_node.host}:{stream_node.port}"
    primaries = {f"{HOST}:{port}" for port in cluster.primary_ports()}
    assert set(trips) <= primaries and len(trips) == 3, trips  # the entities are on every primary
    for node, count in trips.items():
        # the stream's node: XREADGROUP, its share of the write, the dead letter, XACK
        assert count == (4 if node == stream_at else 1), trips
    assert drained(raw, stream, "feast")
    assert served(store, users) == [2] * 300
    assert raw.xlen(stream + ":dead") == 2


# ---------------------------------------------------------------- Sentinel


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory, server_kind) -> Iterator[SentinelGroup]:
    with SentinelGroup(tmp_path_factory.mktemp("sentinel"), sentinels=3) as group:
        group.start()
        yield group
    clients.reset_clients()


def test_behind_sentinel_a_failover_during_ingestion_loses_no_event(sentinel, tmp_path, unique_project):
    store = make_store(
        tmp_path,
        sentinel.connection_string,
        unique_project,
        redis_type="redis_sentinel",
        sentinel_master=sentinel.master_name,
    )
    primary = admin(sentinel.primary_port())
    stream = f"events:{unique_project}"
    users = [f"u{i}" for i in range(2000)]
    for generation in range(1, 9):
        xadd_all(primary, stream, entries(users, generation))
    assert primary.wait(1, 5000) == 1  # the replica has every entry before the failover

    ingester = StreamIngester(store, SOURCE, stream, "feast", consumer="c1", batch=100, claim_idle_ms=500)
    ingester.ensure_group()
    thread = threading.Thread(target=ingester.run)
    thread.start()
    try:
        time.sleep(0.05)  # under way
        new_primary = admin(sentinel.failover())
        deadline = time.monotonic() + 90
        while not drained(new_primary, stream, "feast") and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        ingester.stop()
        thread.join(30)
    assert drained(new_primary, stream, "feast")
    assert ingester.stats.dead_letters == 0
    assert ingester.stats.entries >= 8 * 2000  # a write lost with the old primary is delivered again
    assert served(store, users) == [8] * 2000
    print(f"\nfailover during ingestion: {ingester.stats.as_dict()}")
