"""Retrieval on the 3-primary / 3-replica Redis Cluster with the Query Engine on every node:
each primary indexes its own hashes, every search runs on each and is merged into the
global top k, and searches keep returning the right documents through a failover."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from feast import Entity, FeatureView, Field, FileSource
from feast.filter_models import ComparisonFilter
from feast.types import Array, Float32, Int64, String
from feast.value_type import ValueType
from redis.cluster import RedisCluster

from devsupport.feature_stores import feature_store
from devsupport.topologies import HOST, admin
from feast_redis_hexpire import clients

pytestmark = pytest.mark.topology

ITEM = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)
DIM = 6
N = 150
VIEW = FeatureView(
    name="docs",
    entities=[ITEM],
    schema=[
        Field(name="item_id", dtype=String),
        Field(name="emb", dtype=Array(Float32), vector_index=True, vector_length=DIM, vector_search_metric="COSINE"),
        Field(name="title", dtype=String),
        Field(name="rating", dtype=Int64),
    ],
    source=FileSource(path="unused.parquet", timestamp_field="event_timestamp"),
)


def frame() -> pd.DataFrame:
    vectors = np.random.default_rng(21).normal(size=(N, DIM)).astype(np.float32)
    return pd.DataFrame(
        {
            "item_id": [f"d{k:03d}" for k in range(N)],
            "emb": [list(map(float, v)) for v in vectors],
            "title": [f"{('alpha', 'beta', 'gamma')[k % 3]} doc {k}" for k in range(N)],
            "rating": [k % 5 for k in range(N)],
            "event_timestamp": [datetime.now(timezone.utc)] * N,
        }
    )


def nearest(data: pd.DataFrame, query: np.ndarray, k: int, mask=None) -> list[str]:
    rows = data if mask is None else data[mask]
    vectors = np.stack(rows["emb"].to_numpy()).astype(np.float64)
    q = query.astype(np.float32).astype(np.float64)
    distances = 1 - vectors @ q / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
    return [rows["item_id"].iloc[i] for i in np.argsort(distances, kind="stable")[:k]]


def ranked_ids(result: dict) -> list[str]:
    return [result["item_id"][i] for i in np.argsort(result["distance"], kind="stable")] if result["distance"] else []


@pytest.fixture(scope="module")
def repo(search_cluster, tmp_path_factory):
    fs = feature_store(
        search_cluster, tmp_path_factory.mktemp("vcluster"), redis_type="redis_cluster", vector_enabled=True,
        text_search_enabled=True,
    )  # fmt: skip
    fs.apply([ITEM, VIEW])
    data = frame()
    fs.write_to_online_store("docs", data)
    yield fs, data
    fs.teardown()
    clients.reset_clients()


def retrieve_async(fs, features: list[str], query, top_k: int) -> list:
    """The store's async retrieval of view `docs` (Feast has none), in an event loop of its own."""
    online, table = fs._get_provider().online_store, fs.get_feature_view("docs")

    async def run():
        try:
            return await online.retrieve_online_documents_v2_async(fs.config, table, features, list(query), top_k)
        finally:
            await online.close()

    return asyncio.run(run())


def project_indexes(cluster, fs) -> dict[int, list[str]]:
    prefix = f"fs:{fs.project}:"
    return {
        port: sorted(n.decode() for n in admin(port).execute_command("FT._LIST") if n.decode().startswith(prefix))
        for port in cluster.primary_ports()
    }


def test_every_primary_holds_its_copy_and_indexes_its_own_hashes(search_cluster, repo):
    fs, _ = repo
    indexes = project_indexes(search_cluster, fs)
    assert len(indexes) == 3 and all(len(names) == 1 for names in indexes.values())
    client = RedisCluster(host=HOST, port=search_cluster.ports[0])
    try:
        counts = []
        for port, (name,) in indexes.items():
            info = admin(port).execute_command("FT.INFO", name)
            counts.append(int(dict(zip(info[::2], info[1::2]))[b"num_docs"]))
            assert client.keyslot(name) in client.nodes_manager.slots_cache and (
                client.nodes_manager.slots_cache[client.keyslot(name)][0].port == port
            )  # the copy's name hashes to a slot of its primary
        assert sum(counts) == N and min(counts) > 0  # each primary indexed only its own share
    finally:
        client.close()


def test_knn_filters_and_keywords_give_the_global_top_k(repo):
    fs, data = repo
    for seed in range(5):
        query = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
        got = fs.retrieve_online_documents_v2(features=["docs:emb", "docs:title"], query=list(query), top_k=8)
        assert ranked_ids(got.to_dict()) == nearest(data, query, 8)
    query = np.random.default_rng(99).normal(size=DIM).astype(np.float32)
    got = fs.retrieve_online_documents_v2(
        features=["docs:title"], query=list(query), top_k=5, filters=ComparisonFilter(type="gte", key="rating", value=3)
    ).to_dict()
    assert ranked_ids(got) == nearest(data, query, 5, data["rating"] >= 3)
    got = fs.retrieve_online_documents_v2(features=["docs:title"], query_string="gamma", top_k=500).to_dict()
    assert sorted(got["item_id"]) == sorted(data["item_id"][data["title"].str.startswith("gamma")])
    everything = fs.retrieve_online_documents_v2(features=["docs:title"], query=list(query), top_k=10_000).to_dict()
    assert len(everything["item_id"]) == N


def test_async_search_on_the_cluster_matches_sync(repo):
    fs, _ = repo
    online = fs._get_provider().online_store
    table = fs.get_feature_view("docs")
    query = list(np.random.default_rng(7).normal(size=DIM).astype(np.float32))
    sync_rows = online.retrieve_online_documents_v2(fs.config, table, ["title"], query, 6, "COSINE")

    async def run():
        try:
            return await online.retrieve_online_documents_v2_async(fs.config, table, ["title"], query, 6, "COSINE")
        finally:
            await online.close()

    assert asyncio.run(run()) == sync_rows


def test_searches_keep_returning_the_global_top_k_through_a_failover(search_cluster, repo):
    fs, data = repo
    queries = [np.random.default_rng(100 + i).normal(size=DIM).astype(np.float32) for i in range(4)]
    expected = [nearest(data, q, 5) for q in queries]
    results: list[bool] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def searching() -> None:
        i = 0
        while not stop.is_set():
            try:
                got = fs.retrieve_online_documents_v2(features=["docs:title"], query=list(queries[i % 4]), top_k=5)
                results.append(ranked_ids(got.to_dict()) == expected[i % 4])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            i += 1

    worker = threading.Thread(target=searching)
    worker.start()
    try:
        time.sleep(0.5)
        before = len(results)
        primary = search_cluster.primary_ports()[0]
        search_cluster.failover(search_cluster.replica_of(primary))
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert errors == []
    assert before > 0 and len(results) > before + 3 and all(results)
    assert primary not in search_cluster.primary_ports()
    # after the failover every primary (the promoted replica included) still answers
    query = np.random.default_rng(5).normal(size=DIM).astype(np.float32)
    got = fs.retrieve_online_documents_v2(features=["docs:title"], query=list(query), top_k=10).to_dict()
    assert ranked_ids(got) == nearest(data, query, 10)


def test_with_the_project_hash_tag_one_primary_holds_the_index_and_answers(search_cluster, tmp_path):
    fs = feature_store(search_cluster, tmp_path, redis_type="redis_cluster", vector_enabled=True, hash_tag="project")
    try:
        fs.apply([ITEM, VIEW])
        data = frame()
        fs.write_to_online_store("docs", data)
        holders = {port: names for port, names in project_indexes(search_cluster, fs).items() if names}
        assert holders == {}  # the names carry the tag: `fs:{project}:...`, not `fs:project:...`
        tagged = {
            port: [n for n in admin(port).execute_command("FT._LIST") if f"{{{fs.project}}}".encode() in n]
            for port in search_cluster.primary_ports()
        }
        assert sorted(len(names) for names in tagged.values()) == [0, 0, 1]
        query = np.random.default_rng(8).normal(size=DIM).astype(np.float32)
        got = fs.retrieve_online_documents_v2(features=["docs:title"], query=list(query), top_k=6).to_dict()
        assert ranked_ids(got) == nearest(data, query, 6)
        assert len(retrieve_async(fs, ["item_id"], query, 6)) == 6
    finally:
        fs.teardown()
        clients.reset_clients()
