"""`distance_metric="L1"` (Manhattan), which the Query Engine has no metric for, served
exactly over a field indexed for L2: the L2 neighbours are the candidates, ranked by L1
and widened until no other document can beat them (L1 >= L2). Checked against numpy brute
force on data whose L1 and L2 rankings differ, through Feast's FeatureStore, sync and
async, with filters and keywords, under expiry, on a standalone server and on Redis Cluster."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
import redis
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource
from feast.data_source import PushMode
from feast.filter_models import ComparisonFilter
from feast.types import Array, Float32, Float64, Int64, String
from feast.value_type import ValueType

from devsupport.feature_stores import feature_store
from devsupport.topologies import admin
from feast_redis_hexpire import clients
from feast_redis_hexpire.errors import InvalidInput
from tests.support.store import run_async

ITEM = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)
SOURCE = FileSource(path="unused.parquet", timestamp_field="event_timestamp")
DIM = 8
QUERY = np.linspace(-1.0, 1.0, DIM).astype(np.float32)
TS = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)


def view(name: str, metric: str | None = None, element=Float32, **kwargs) -> FeatureView:
    schema = [
        Field(name="item_id", dtype=String),
        Field(name="emb", dtype=Array(element), vector_index=True, vector_length=DIM, vector_search_metric=metric),
        Field(name="rating", dtype=Int64),
        Field(name="title", dtype=String),
    ]
    return FeatureView(name=name, entities=[ITEM], schema=schema, source=kwargs.pop("source", SOURCE), **kwargs)


def vectors(seed: int = 1) -> np.ndarray:
    """Around QUERY: 24 documents spread evenly over every axis (L2 1.0-1.6, so L1 2.8-4.5),
    24 along one axis (L2 1.7-3.0, L1 about the same) and 32 further off at random. By L2
    the spread ones come first, by L1 the axis ones: the first L2 candidates never hold
    the L1 top k, so a search must widen."""
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(24, DIM))
    spread = QUERY + signs * rng.uniform(1.0, 1.6, size=(24, 1)) / np.sqrt(DIM)
    axis = np.zeros((24, DIM))
    axis[np.arange(24), np.arange(24) % DIM] = rng.uniform(1.7, 3.0, size=24) * rng.choice([-1.0, 1.0], size=24)
    axis = QUERY + axis + rng.normal(scale=0.02, size=(24, DIM))
    far = QUERY + rng.normal(scale=1.3, size=(32, DIM))
    return np.concatenate([spread, axis, far]).astype(np.float32)


def frame(data: np.ndarray, ts: list[datetime] | None = None) -> pd.DataFrame:
    n = len(data)
    return pd.DataFrame(
        {
            "item_id": [f"d{k:03d}" for k in range(n)],
            "emb": [list(map(float, v)) for v in data],
            "rating": [k % 4 for k in range(n)],
            "title": [("red apple", "green river", "red stone")[k % 3] for k in range(n)],
            "event_timestamp": ts or [TS + timedelta(seconds=k) for k in range(n)],
        }
    )


def brute_force(rows: pd.DataFrame, query: np.ndarray, k: int, metric: str = "L1") -> tuple[list[str], list[float]]:
    stored = np.stack([np.asarray(v, dtype=np.float32) for v in rows["emb"]]).astype(np.float64)
    diff = stored - query.astype(np.float32).astype(np.float64)
    distances = np.abs(diff).sum(axis=1) if metric == "L1" else (diff**2).sum(axis=1)
    order = np.argsort(distances, kind="stable")[:k]
    return [rows["item_id"].iloc[i] for i in order], [float(distances[i]) for i in order]


def ranked(result: dict) -> tuple[list[str], list[float]]:
    """(ids, distances) in rank order: Feast lays the response out in join-key order."""
    order = sorted(range(len(result["distance"])), key=lambda i: result["distance"][i])
    return [result["item_id"][i] for i in order], [result["distance"][i] for i in order]


def l1_search(fs: FeatureStore, name: str, query, k: int, **kwargs) -> dict:
    return fs.retrieve_online_documents_v2(
        features=[f"{name}:emb", f"{name}:rating"], query=list(query), top_k=k, distance_metric="L1", **kwargs
    ).to_dict()


def searches(ports: list[int]) -> int:
    """FT.SEARCH calls the servers have answered so far."""
    return sum(admin(port).info("commandstats").get("cmdstat_FT.SEARCH", {}).get("calls", 0) for port in ports)


def check_exact(fs: FeatureStore, name: str, rows: pd.DataFrame, query: np.ndarray, k: int, **kwargs) -> None:
    got_ids, got_distances = ranked(l1_search(fs, name, query, k, **kwargs))
    want_ids, want_distances = brute_force(rows, query, k)
    assert got_ids == want_ids
    assert got_distances == pytest.approx(want_distances, rel=1e-6)


def check_everything(fs: FeatureStore, name: str, rows: pd.DataFrame, ports: list[int]) -> None:
    """The checks standalone and cluster share: the constructed query (whose L1 and L2
    rankings differ) widens and is exact, random queries and filters are exact, and a
    top_k beyond the data returns every document."""
    want, _ = brute_force(rows, QUERY, 5)
    assert not set(want) & set(brute_force(rows, QUERY, 5, "L2")[0])  # L2's top 5 would be all wrong
    before = searches(ports)
    fs.retrieve_online_documents_v2(features=[f"{name}:emb"], query=list(QUERY), top_k=5, distance_metric="L2")
    one_round = searches(ports) - before
    before = searches(ports)
    check_exact(fs, name, rows, QUERY, 5)
    assert searches(ports) - before > one_round  # it widened: more than one round of searches
    differs = False
    for seed in range(6):
        query = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
        check_exact(fs, name, rows, query, 7)
        differs |= brute_force(rows, query, 7)[0] != brute_force(rows, query, 7, "L2")[0]
    assert differs
    for ratings in ([0], [1, 3]):
        flt = ComparisonFilter(type="in", key="rating", value=ratings)
        check_exact(fs, name, rows[rows["rating"].isin(ratings)], QUERY, 4, filters=flt)
    reds = rows[rows["title"].str.contains("red")]
    assert brute_force(reds, QUERY, 6)[0] != brute_force(reds, QUERY, 6, "L2")[0]
    check_exact(fs, name, reds, QUERY, 6, query_string="red")  # the keywords narrow, L1 ranks
    check_exact(fs, name, rows, QUERY, 500)  # top_k beyond the data: every document, by L1
    matched = rows[rows["rating"] == 2]
    check_exact(fs, name, matched, QUERY, 500, filters=ComparisonFilter(type="eq", key="rating", value=2))


def async_matches_sync(fs: FeatureStore, name: str) -> None:
    online = fs._get_provider().online_store
    table = fs.get_feature_view(name)
    query = list(np.random.default_rng(42).normal(size=DIM).astype(np.float32))
    for q, k in ((list(QUERY), 5), (query, 9)):
        sync_rows = online.retrieve_online_documents_v2(fs.config, table, ["rating", "emb"], q, k, "L1")
        async_rows = run_async(
            fs,
            lambda q=q, k=k: online.retrieve_online_documents_v2_async(fs.config, table, ["rating", "emb"], q, k, "L1"),
        )
        assert async_rows == sync_rows and len(sync_rows) == k


# ---------------------------------------------------------------- standalone


@pytest.fixture(scope="module")
def repo(search_server, tmp_path_factory):
    fs = feature_store(search_server, tmp_path_factory.mktemp("l1"), vector_enabled=True, text_search_enabled=True)
    views = [view("any_metric"), view("l2_only", "L2"), view("cosine_only", "COSINE"), view("f64", "L2", Float64)]
    fs.apply([ITEM, *views])
    rows = frame(vectors())
    for name in ("any_metric", "l2_only", "cosine_only", "f64"):
        fs.write_to_online_store(name, rows)
    yield fs, rows
    fs.teardown()


def test_l1_is_exact_over_the_l2_index(search_server, repo):
    fs, rows = repo
    check_everything(fs, "any_metric", rows, [search_server.port])


def test_l1_over_float64_vectors(repo):
    fs, rows = repo
    online = fs._get_provider().online_store
    table = fs.get_feature_view("f64")
    for query in (QUERY, np.random.default_rng(8).normal(size=DIM).astype(np.float32)):
        hits = online.retrieve_online_documents(fs.config, table, ["emb"], list(query), 5, "L1")
        by_rank = sorted(hits, key=lambda hit: hit[4].float_val)
        want_ids, want_distances = brute_force(rows, query, 5)
        assert [hit[1].entity_values[0].string_val for hit in by_rank] == want_ids
        assert [hit[4].float_val for hit in by_rank] == pytest.approx(want_distances, rel=1e-6)
        assert list(by_rank[0][3].double_list_val.val) == list(rows.set_index("item_id")["emb"][want_ids[0]])


def test_async_l1_matches_sync(repo):
    fs, _ = repo
    async_matches_sync(fs, "any_metric")


def test_feasts_first_retrieval_api_serves_l1_on_a_field_declared_l2(repo):
    """Feast's universal test asks retrieve_online_documents for L1 on a field declared
    `vector_search_metric="L2"`, and for "wrong"."""
    fs, rows = repo
    want_ids, want_distances = brute_force(rows, QUERY, 6)
    got = fs.retrieve_online_documents(
        features=["l2_only:emb", "l2_only:item_id"], query=list(QUERY), top_k=6, distance_metric="L1"
    ).to_dict()
    assert sorted(got["item_id"]) == sorted(want_ids)
    stored = rows.set_index("item_id")["emb"]
    for item, emb in zip(got["item_id"], got["emb"]):  # each id paired with its own vector
        assert emb == pytest.approx(stored[item], rel=1e-6)
    online = fs._get_provider().online_store
    table = fs.get_feature_view("l2_only")
    hits = online.retrieve_online_documents(fs.config, table, ["emb"], list(QUERY), 6, "L1")
    by_rank = sorted(hits, key=lambda hit: hit[4].float_val)
    assert [hit[1].entity_values[0].string_val for hit in by_rank] == want_ids
    assert [hit[4].float_val for hit in by_rank] == pytest.approx(want_distances, rel=1e-6)
    with pytest.raises(ValueError, match="distance metric 'wrong' cannot be served"):
        fs.retrieve_online_documents(features=["l2_only:emb"], query=list(QUERY), top_k=2, distance_metric="wrong")


def test_l1_on_a_field_without_an_l2_index_is_a_clear_error(repo):
    fs, _ = repo
    online = fs._get_provider().online_store
    table = fs.get_feature_view("cosine_only")
    with pytest.raises(InvalidInput, match="'cosine_only', feature 'emb': distance metric 'L1' cannot be served") as e:
        online.retrieve_online_documents_v2(fs.config, table, ["rating"], list(QUERY), 3, "L1")
    assert (e.value.view, e.value.feature, e.value.value) == ("cosine_only", "emb", "L1")
    assert 'declare vector_search_metric="L2"' in str(e.value)


def test_an_expired_embedding_is_never_an_l1_result(search_server, tmp_path):
    """A stream view's embedding past its per-field TTL is not a candidate, however many
    rounds the search widens to."""
    fs = feature_store(search_server, tmp_path, vector_enabled=True)
    live = view("live", source=PushSource(name="live_push", batch_source=SOURCE), tags={"hexpire.ttl_seconds": "3"})
    fs.apply([ITEM, live])
    try:
        now = datetime.now(timezone.utc)
        rows = frame(vectors(), [now] * 80)
        best = brute_force(rows, QUERY, 1)[0][0]
        rows.loc[rows["item_id"] == best, "event_timestamp"] = now - timedelta(seconds=2)  # expires in about 1 s
        fs.push("live_push", rows, to=PushMode.ONLINE)
        assert ranked(l1_search(fs, "live", QUERY, 3))[0][0] == best  # found by widening, for now
        deadline = time.monotonic() + 5
        while best in l1_search(fs, "live", QUERY, 3)["item_id"]:
            assert time.monotonic() < deadline, "the expired embedding is still returned"
            time.sleep(0.05)
        key = f"fs:{fs.project}:item_id={best}".encode()
        client = redis.Redis.from_url(search_server.url)
        try:
            assert client.hget(key, "live:emb") is None  # gone on the server, not filtered here
            assert client.hget(f"fs:{fs.project}:item_id=d000".encode(), "live:emb") is not None
        finally:
            client.close()
        alive = rows[rows["item_id"] != best]
        for _ in range(5):
            check_exact(fs, "live", alive, QUERY, 3)
        check_exact(fs, "live", alive, QUERY, 500)
    finally:
        fs.teardown()


# ---------------------------------------------------------------- Redis Cluster


@pytest.fixture(scope="module")
def cluster_repo(search_cluster, tmp_path_factory):
    fs = feature_store(
        search_cluster,
        tmp_path_factory.mktemp("l1cluster"),
        redis_type="redis_cluster",
        vector_enabled=True,
        text_search_enabled=True,
    )
    fs.apply([ITEM, view("any_metric")])
    rows = frame(vectors(seed=2))
    fs.write_to_online_store("any_metric", rows)
    yield fs, rows
    fs.teardown()
    clients.reset_clients()


@pytest.mark.topology
def test_l1_is_exact_on_the_cluster(search_cluster, cluster_repo):
    fs, rows = cluster_repo
    check_everything(fs, "any_metric", rows, search_cluster.primary_ports())


@pytest.mark.topology
def test_async_l1_on_the_cluster_matches_sync(cluster_repo):
    fs, _ = cluster_repo
    async_matches_sync(fs, "any_metric")
